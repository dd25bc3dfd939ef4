/* WDSR-B's 1x1 pair, expand -> ReLU -> reduce, for float32 pixels in rows (NHWC), AVX2 + FMA.
 *
 * Why by hand: as two BLAS products per run of pixels (sisr.inference.fast)
 * the pair reached 60-70 % of the machine's matrix-multiply peak on the
 * development machine; the products are narrow (32 -> 192 -> 25), and the
 * bias copies, the ReLU pass and the copy out each cost a trip through
 * memory. Here a run of BLOCK pixels goes through both products with the
 * wide activation in a buffer that stays in the L1/L2 caches, the bias is
 * where the accumulators start, the ReLU happens in registers, and the result
 * is stored straight into its place: 80-100 % of that peak there (2 threads).
 *
 * Compiled on first use by sisr.inference.native (gcc or clang, -O3 -mavx2
 * -mfma -fopenmp) and loaded beside PyTorch, whose OpenMP runtime it shares.
 * Layouts, all float32 and contiguous:
 *   x   [n][cin]                 input pixels
 *   w1  [hp / 24][cin][24]       expand weights, hidden padded with zeros to hp (a multiple of 24)
 *   b1  [hp]
 *   w2  [lp / 32][hp][32]        reduce weights, outputs padded with zeros to lp (a multiple of 32)
 *   b2  [lp]
 *   z   [n][low]                 output pixels
 *   skip, x_out [n][cin]         optional: the input is x + skip_scale * skip, also stored in x_out
 */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__AVX2__) || !defined(__FMA__)
#error "needs AVX2 and FMA"
#endif

/* Pixels per run: a multiple of 12 (the expand tile is 4 pixels, the reduce tile 3). */
#define BLOCK 24

#define FMA(s, w, a) a = _mm256_fmadd_ps(s, w, a)

/* h[4][24] = relu(x[4][cin] . w[cin][24] + b[24]); rows of x are cin apart, rows of h hs apart. */
static void expand_tile(const float *x, int cin, const float *w, const float *b, float *h, long hs) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), b2 = _mm256_loadu_ps(b + 16);
    __m256 a00 = b0, a01 = b1, a02 = b2, a10 = b0, a11 = b1, a12 = b2;
    __m256 a20 = b0, a21 = b1, a22 = b2, a30 = b0, a31 = b1, a32 = b2;
    for (int k = 0; k < cin; k++, w += 24) {
        __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8), w2 = _mm256_loadu_ps(w + 16), s;
        s = _mm256_broadcast_ss(x + k);
        FMA(s, w0, a00); FMA(s, w1, a01); FMA(s, w2, a02);
        s = _mm256_broadcast_ss(x + cin + k);
        FMA(s, w0, a10); FMA(s, w1, a11); FMA(s, w2, a12);
        s = _mm256_broadcast_ss(x + 2 * cin + k);
        FMA(s, w0, a20); FMA(s, w1, a21); FMA(s, w2, a22);
        s = _mm256_broadcast_ss(x + 3 * cin + k);
        FMA(s, w0, a30); FMA(s, w1, a31); FMA(s, w2, a32);
    }
    const __m256 zero = _mm256_setzero_ps();
#define STORE(r, a0, a1, a2)                                  \
    _mm256_storeu_ps(h + r * hs, _mm256_max_ps(a0, zero));     \
    _mm256_storeu_ps(h + r * hs + 8, _mm256_max_ps(a1, zero)); \
    _mm256_storeu_ps(h + r * hs + 16, _mm256_max_ps(a2, zero));
    STORE(0, a00, a01, a02) STORE(1, a10, a11, a12) STORE(2, a20, a21, a22) STORE(3, a30, a31, a32)
#undef STORE
}

/* Store the first `count` (<= 8) floats of v at p. */
static inline void store_first(float *p, __m256 v, int count) {
    if (count >= 8) {
        _mm256_storeu_ps(p, v);
    } else if (count > 0) {
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(count), lanes), v);
    }
}

/* z[3][cols] = h[3][hp] . w[hp][32] + b[32], the first `cols` (<= 32) columns stored. */
static void reduce_tile(const float *h, int hp, const float *w, const float *b, float *z, long zs, int cols) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), b2 = _mm256_loadu_ps(b + 16), b3 = _mm256_loadu_ps(b + 24);
    __m256 a00 = b0, a01 = b1, a02 = b2, a03 = b3, a10 = b0, a11 = b1, a12 = b2, a13 = b3;
    __m256 a20 = b0, a21 = b1, a22 = b2, a23 = b3;
    for (int k = 0; k < hp; k++, w += 32) {
        __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8), w2 = _mm256_loadu_ps(w + 16);
        __m256 w3 = _mm256_loadu_ps(w + 24), s;
        s = _mm256_broadcast_ss(h + k);
        FMA(s, w0, a00); FMA(s, w1, a01); FMA(s, w2, a02); FMA(s, w3, a03);
        s = _mm256_broadcast_ss(h + hp + k);
        FMA(s, w0, a10); FMA(s, w1, a11); FMA(s, w2, a12); FMA(s, w3, a13);
        s = _mm256_broadcast_ss(h + 2 * hp + k);
        FMA(s, w0, a20); FMA(s, w1, a21); FMA(s, w2, a22); FMA(s, w3, a23);
    }
#define STORE(r, a0, a1, a2, a3)                      \
    store_first(z + r * zs, a0, cols);                \
    store_first(z + r * zs + 8, a1, cols - 8);        \
    store_first(z + r * zs + 16, a2, cols - 16);      \
    store_first(z + r * zs + 24, a3, cols - 24);
    STORE(0, a00, a01, a02, a03) STORE(1, a10, a11, a12, a13) STORE(2, a20, a21, a22, a23)
#undef STORE
}

/* BLOCK pixels through both products; h is the thread's [BLOCK][hp] buffer. */
static void pair_block(const float *x, int cin, int hp, const float *w1, const float *b1, int lp,
                       const float *w2, const float *b2, float *z, int low, float *h) {
    for (int j = 0; j < hp / 24; j++)
        for (int p = 0; p < BLOCK; p += 4)
            expand_tile(x + (long)p * cin, cin, w1 + (long)j * cin * 24, b1 + j * 24, h + (long)p * hp + j * 24, hp);
    for (int c = 0; c < lp / 32; c++) {
        int cols = low - c * 32 < 32 ? low - c * 32 : 32;
        for (int p = 0; p < BLOCK; p += 3)
            reduce_tile(h + (long)p * hp, hp, w2 + (long)c * hp * 32, b2 + c * 32, z + (long)p * low + c * 32, low, cols);
    }
}

/* x_out[count][cin] = x + scale * skip: the previous block's skip addition, done here while the pixels
   pass through the cache anyway instead of in a pass of its own. */
static void add_skip(const float *x, const float *skip, float scale, float *x_out, long count) {
    const __m256 s = _mm256_set1_ps(scale);
    long i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(x_out + i, _mm256_fmadd_ps(s, _mm256_loadu_ps(skip + i), _mm256_loadu_ps(x + i)));
    for (; i < count; i++) x_out[i] = x[i] + scale * skip[i];
}

/* n pixels on one thread; a last partial run goes through zero-padded copies. Returns 0, or -1 out of memory. */
static int pair_run(const float *x, const float *skip, float skip_scale, float *x_out, long n, int cin, int hp,
                    const float *w1, const float *b1, int lp, const float *w2, const float *b2, float *z, int low) {
    float *h = aligned_alloc(64, sizeof(float) * BLOCK * hp);
    if (h == NULL) return -1;
    long full = n / BLOCK * BLOCK;
    for (long p = 0; p < full; p += BLOCK) {
        const float *source = x + p * cin;
        if (skip != NULL) {
            add_skip(source, skip + p * cin, skip_scale, x_out + p * cin, (long)BLOCK * cin);
            source = x_out + p * cin;
        }
        pair_block(source, cin, hp, w1, b1, lp, w2, b2, z + p * low, low, h);
    }
    int status = 0;
    if (full < n) {
        float *xt = calloc((size_t)BLOCK * cin, sizeof(float)), *zt = malloc(sizeof(float) * BLOCK * low);
        if (xt != NULL && zt != NULL) {
            const float *source = x + full * cin;
            if (skip != NULL) {
                add_skip(source, skip + full * cin, skip_scale, x_out + full * cin, (n - full) * cin);
                source = x_out + full * cin;
            }
            memcpy(xt, source, sizeof(float) * (n - full) * cin);
            pair_block(xt, cin, hp, w1, b1, lp, w2, b2, zt, low, h);
            memcpy(z + full * low, zt, sizeof(float) * (n - full) * low);
        } else {
            status = -1;
        }
        free(xt);
        free(zt);
    }
    free(h);
    return status;
}

/* z = reduce(relu(expand(x))) for n pixels on `threads` threads. With `skip` (not NULL), the input is
   x + skip_scale * skip, written to x_out as well. Returns 0, or -1 out of memory. */
int sisr_wdsr_pair(const float *x, const float *skip, float skip_scale, float *x_out, long n, int cin, int hp,
                   const float *w1, const float *b1, int lp, const float *w2, const float *b2, float *z, int low,
                   int threads) {
    if (threads < 1) threads = 1;
    long per = ((n + threads - 1) / threads + BLOCK - 1) / BLOCK * BLOCK; /* >= BLOCK for n >= 1 */
    int status = 0;
#pragma omp parallel num_threads(threads) reduction(| : status)
    {
        long start = omp_get_thread_num() * per, stop = start + per < n ? start + per : n;
        if (start < n)
            status |= pair_run(x + start * cin, skip == NULL ? NULL : skip + start * cin, skip_scale,
                               x_out == NULL ? NULL : x_out + start * cin, stop - start, cin, hp, w1, b1, lp, w2,
                               b2, z + start * low, low);
    }
    return status;
}
