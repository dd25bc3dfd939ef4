/* WDSR-B's 1x1 pair, expand -> ReLU -> reduce, for float32 pixels in rows (NHWC), AVX2 + FMA.
 *
 * Why by hand: as two BLAS products per run of pixels (sisr.inference.fast)
 * the pair stays well below the machine's matrix-multiply peak; the products are narrow (32 -> 192 -> 25), and the
 * bias copies, the ReLU pass and the copy out each cost a trip through
 * memory. Here a run of BLOCK pixels goes through both products with the
 * wide activation in a buffer that stays in the L1/L2 caches, the bias is
 * where the accumulators start, the ReLU happens in registers, and the result
 * is stored straight into its place (timed by benchmarks/bench_native.py;
 * figures in docs/benchmarks.md).
 *
 * Compiled on first use by sisr.inference.native (gcc or clang, -O3 -mavx2
 * -mfma -fopenmp) and loaded beside PyTorch, whose OpenMP runtime it shares.
 * The reduce product runs in tiles of 24 output columns, 4 pixels by 3
 * vectors; WDSR-B-32's 25th column (up to SIDE_MAX columns past a multiple
 * of 24) is instead accumulated by the expand product while its ReLU output
 * is still in registers, where a padded 32-column tile would spend 7/32 of
 * the reduce product on zeros (about a tenth of the pair's time).
 *
 * Layouts, all float32 and contiguous:
 *   x   [n][cin]                 input pixels
 *   w1  [hp / 24][cin][24]       expand weights, hidden padded with zeros to hp (a multiple of 24)
 *   b1  [hp]
 *   w2  [tiles][hp][24]          reduce weights of the first low - side outputs, zero-padded to tiles * 24
 *   b2  [tiles * 24]
 *   ws  [side][hp], bs [side]    the last `side` outputs' reduce weights and biases (side <= SIDE_MAX)
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

/* Pixels per run: a multiple of 4 (both products work on tiles of 4 pixels). */
#define BLOCK 24

#define FMA(s, w, a) a = _mm256_fmadd_ps(s, w, a)

/* The tile both products use: 4 pixels x 24 channels in 12 accumulators a00 .. a32 (row, vector),
   started at the bias b; with 3 weight vectors and a broadcast they fill the 16 AVX2 registers.
   (Macros, not a function over an array: GCC then spills the accumulators to the stack.) */
#define TILE_START(b)                                                                          \
    __m256 a00 = _mm256_loadu_ps(b), a01 = _mm256_loadu_ps((b) + 8), a02 = _mm256_loadu_ps((b) + 16); \
    __m256 a10 = a00, a11 = a01, a12 = a02, a20 = a00, a21 = a01, a22 = a02, a30 = a00, a31 = a01, a32 = a02

/* a += rows[4][depth] . w[depth][24], the rows `stride` floats apart. */
#define TILE_ACCUMULATE(rows, stride, depth, w)                                                        \
    for (int k = 0; k < (depth); k++) {                                                                \
        const float *wk = (w) + 24 * k;                                                                \
        __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8), w2 = _mm256_loadu_ps(wk + 16), s; \
        s = _mm256_broadcast_ss((rows) + k);                                                           \
        FMA(s, w0, a00); FMA(s, w1, a01); FMA(s, w2, a02);                                             \
        s = _mm256_broadcast_ss((rows) + (stride) + k);                                                \
        FMA(s, w0, a10); FMA(s, w1, a11); FMA(s, w2, a12);                                             \
        s = _mm256_broadcast_ss((rows) + 2 * (stride) + k);                                            \
        FMA(s, w0, a20); FMA(s, w1, a21); FMA(s, w2, a22);                                             \
        s = _mm256_broadcast_ss((rows) + 3 * (stride) + k);                                            \
        FMA(s, w0, a30); FMA(s, w1, a31); FMA(s, w2, a32);                                             \
    }

/* Output columns folded into the expand product (see pair_block), at most. */
#define SIDE_MAX 2

/* h[4][24] = relu(x[4][cin] . w[cin][24] + b[24]); rows of x are cin apart, rows of h hs apart.
   For each of `side` extra output columns c, part[r][c] (8 lanes) += h[r] . ws[c * hs ...] for this tile's
   24 hidden channels: the reduce product's last columns, while h is still in registers. */
static void expand_tile(const float *x, int cin, const float *w, const float *b, float *h, long hs, int side,
                        const float *ws, float *part) {
    TILE_START(b);
    TILE_ACCUMULATE(x, cin, cin, w)
    const __m256 zero = _mm256_setzero_ps();
    a00 = _mm256_max_ps(a00, zero); a01 = _mm256_max_ps(a01, zero); a02 = _mm256_max_ps(a02, zero);
    a10 = _mm256_max_ps(a10, zero); a11 = _mm256_max_ps(a11, zero); a12 = _mm256_max_ps(a12, zero);
    a20 = _mm256_max_ps(a20, zero); a21 = _mm256_max_ps(a21, zero); a22 = _mm256_max_ps(a22, zero);
    a30 = _mm256_max_ps(a30, zero); a31 = _mm256_max_ps(a31, zero); a32 = _mm256_max_ps(a32, zero);
#define STORE(r, a0, a1, a2)                   \
    _mm256_storeu_ps(h + r * hs, a0);          \
    _mm256_storeu_ps(h + r * hs + 8, a1);      \
    _mm256_storeu_ps(h + r * hs + 16, a2);
    STORE(0, a00, a01, a02) STORE(1, a10, a11, a12) STORE(2, a20, a21, a22) STORE(3, a30, a31, a32)
#undef STORE
    for (int c = 0; c < side; c++) {
        const float *wc = ws + c * hs;
        __m256 w0 = _mm256_loadu_ps(wc), w1 = _mm256_loadu_ps(wc + 8), w2 = _mm256_loadu_ps(wc + 16);
#define SIDE(r, a0, a1, a2)                                                                        \
        {                                                                                          \
            float *q = part + (r * SIDE_MAX + c) * 8;                                              \
            __m256 t = _mm256_fmadd_ps(a2, w2, _mm256_fmadd_ps(a1, w1, _mm256_mul_ps(a0, w0)));    \
            _mm256_storeu_ps(q, _mm256_add_ps(_mm256_loadu_ps(q), t));                             \
        }
        SIDE(0, a00, a01, a02) SIDE(1, a10, a11, a12) SIDE(2, a20, a21, a22) SIDE(3, a30, a31, a32)
#undef SIDE
    }
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

/* z[4][cols] = h[4][hp] . w[hp][24] + b[24], the first `cols` (<= 24) columns stored. */
static void reduce_tile(const float *h, int hp, const float *w, const float *b, float *z, long zs, int cols) {
    TILE_START(b);
    TILE_ACCUMULATE(h, hp, hp, w)
#define STORE(r, a0, a1, a2)                      \
    store_first(z + r * zs, a0, cols);            \
    store_first(z + r * zs + 8, a1, cols - 8);    \
    store_first(z + r * zs + 16, a2, cols - 16);
    STORE(0, a00, a01, a02) STORE(1, a10, a11, a12) STORE(2, a20, a21, a22) STORE(3, a30, a31, a32)
#undef STORE
}

static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* BLOCK pixels through both products; h is the thread's [BLOCK][hp] buffer, part its [BLOCK][SIDE_MAX][8]. */
static void pair_block(const float *x, int cin, int hp, const float *w1, const float *b1, int tiles,
                       const float *w2, const float *b2, int side, const float *ws, const float *bs, float *z,
                       int low, float *h, float *part) {
    memset(part, 0, sizeof(float) * BLOCK * SIDE_MAX * 8);
    for (int j = 0; j < hp / 24; j++)
        for (int p = 0; p < BLOCK; p += 4)
            expand_tile(x + (long)p * cin, cin, w1 + (long)j * cin * 24, b1 + j * 24, h + (long)p * hp + j * 24, hp,
                        side, ws + j * 24, part + p * SIDE_MAX * 8);
    int main_cols = low - side;
    for (int t = 0; t < tiles; t++) {
        int cols = main_cols - t * 24 < 24 ? main_cols - t * 24 : 24;
        for (int p = 0; p < BLOCK; p += 4)
            reduce_tile(h + (long)p * hp, hp, w2 + (long)t * hp * 24, b2 + t * 24, z + (long)p * low + t * 24, low, cols);
    }
    for (int p = 0; p < BLOCK; p++)
        for (int c = 0; c < side; c++)
            z[(long)p * low + main_cols + c] = bs[c] + sum8(_mm256_loadu_ps(part + (p * SIDE_MAX + c) * 8));
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
                    const float *w1, const float *b1, int tiles, const float *w2, const float *b2, int side,
                    const float *ws, const float *bs, float *z, int low) {
    float *h = aligned_alloc(64, sizeof(float) * BLOCK * hp), *part = malloc(sizeof(float) * BLOCK * SIDE_MAX * 8);
    if (h == NULL || part == NULL) {
        free(h);
        free(part);
        return -1;
    }
    long full = n / BLOCK * BLOCK;
    for (long p = 0; p < full; p += BLOCK) {
        const float *source = x + p * cin;
        if (skip != NULL) {
            add_skip(source, skip + p * cin, skip_scale, x_out + p * cin, (long)BLOCK * cin);
            source = x_out + p * cin;
        }
        pair_block(source, cin, hp, w1, b1, tiles, w2, b2, side, ws, bs, z + p * low, low, h, part);
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
            pair_block(xt, cin, hp, w1, b1, tiles, w2, b2, side, ws, bs, zt, low, h, part);
            memcpy(z + full * low, zt, sizeof(float) * (n - full) * low);
        } else {
            status = -1;
        }
        free(xt);
        free(zt);
    }
    free(h);
    free(part);
    return status;
}

/* z = reduce(relu(expand(x))) for n pixels on `threads` threads. With `skip` (not NULL), the input is
   x + skip_scale * skip, written to x_out as well. Returns 0, or -1 out of memory. */
int sisr_wdsr_pair(const float *x, const float *skip, float skip_scale, float *x_out, long n, int cin, int hp,
                   const float *w1, const float *b1, int tiles, const float *w2, const float *b2, int side,
                   const float *ws, const float *bs, float *z, int low, int threads) {
    if (threads < 1) threads = 1;
    long per = ((n + threads - 1) / threads + BLOCK - 1) / BLOCK * BLOCK; /* >= BLOCK for n >= 1 */
    int status = 0;
#pragma omp parallel num_threads(threads) reduction(| : status)
    {
        long start = omp_get_thread_num() * per, stop = start + per < n ? start + per : n;
        if (start < n)
            status |= pair_run(x + start * cin, skip == NULL ? NULL : skip + start * cin, skip_scale,
                               x_out == NULL ? NULL : x_out + start * cin, stop - start, cin, hp, w1, b1, tiles, w2,
                               b2, side, ws, bs, z + start * low, low);
    }
    return status;
}
