/* A 3x3 convolution to 3 output channels (EDSR's and SRResNet's last layer), float32 NHWC, AVX2 + FMA.
 *
 * Why by hand: with 3 outputs the convolution is a long dot product per
 * pixel, which oneDNN runs far below the machine's peak. Here four pixels
 * at a time run their dot products for all three outputs along the input
 * channels, 8 lanes wide (timed by benchmarks/bench_native.py).
 *
 * Layouts, float32, contiguous:
 *   in   [rows + 2][width][cin]   input rows with one row of context above and below (zero rows at the
 *                                 image's edges are the caller's); cin a multiple of 8
 *   w    [3][9][cin]              taps in row-major order
 *   b    [3]
 *   out  [rows][width][3]
 * Zero padding of one pixel on the left and right.
 */
#include <immintrin.h>
#include <omp.h>

#if !defined(__AVX2__) || !defined(__FMA__)
#error "needs AVX2 and FMA"
#endif

#define FMA(s, w, a) a = _mm256_fmadd_ps(s, w, a)

static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four pixels x0 .. x0 + 3 of one output row, none on the left or right border; `in` at (row, x0). */
static void narrow_tile(const float *in, long width, int cin, const float *w, const float *b, float *out) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
    const long tap_stride = 9L * cin;
    for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
            const float *p = in + ((long)ky * width + kx - 1) * cin;
            const float *wt = w + (ky * 3 + kx) * cin;
            for (int c = 0; c < cin; c += 8) {
                __m256 w0 = _mm256_loadu_ps(wt + c), w1 = _mm256_loadu_ps(wt + tap_stride + c);
                __m256 w2 = _mm256_loadu_ps(wt + 2 * tap_stride + c), v;
                v = _mm256_loadu_ps(p + c);
                FMA(v, w0, a00); FMA(v, w1, a01); FMA(v, w2, a02);
                v = _mm256_loadu_ps(p + cin + c);
                FMA(v, w0, a10); FMA(v, w1, a11); FMA(v, w2, a12);
                v = _mm256_loadu_ps(p + 2 * cin + c);
                FMA(v, w0, a20); FMA(v, w1, a21); FMA(v, w2, a22);
                v = _mm256_loadu_ps(p + 3 * cin + c);
                FMA(v, w0, a30); FMA(v, w1, a31); FMA(v, w2, a32);
            }
        }
    }
    out[0] = b[0] + sum8(a00); out[1] = b[1] + sum8(a01); out[2] = b[2] + sum8(a02);
    out[3] = b[0] + sum8(a10); out[4] = b[1] + sum8(a11); out[5] = b[2] + sum8(a12);
    out[6] = b[0] + sum8(a20); out[7] = b[1] + sum8(a21); out[8] = b[2] + sum8(a22);
    out[9] = b[0] + sum8(a30); out[10] = b[1] + sum8(a31); out[11] = b[2] + sum8(a32);
}

/* One pixel x0 anywhere in its row, taps outside the row skipped; `in` at (row, 0). */
static void narrow_pixel(const float *in, long width, int cin, long x0, const float *w, const float *b,
                         float *out) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0;
    const long tap_stride = 9L * cin;
    for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
            long x = x0 + kx - 1;
            if (x < 0 || x >= width) continue;
            const float *p = in + ((long)ky * width + x) * cin;
            const float *wt = w + (ky * 3 + kx) * cin;
            for (int c = 0; c < cin; c += 8) {
                __m256 v = _mm256_loadu_ps(p + c);
                FMA(v, _mm256_loadu_ps(wt + c), a0);
                FMA(v, _mm256_loadu_ps(wt + tap_stride + c), a1);
                FMA(v, _mm256_loadu_ps(wt + 2 * tap_stride + c), a2);
            }
        }
    }
    out[0] = b[0] + sum8(a0); out[1] = b[1] + sum8(a1); out[2] = b[2] + sum8(a2);
}

void sisr_conv3x3_to3(const float *in, long rows, long width, int cin, const float *w, const float *b, float *out,
                      int threads) {
    if (threads < 1) threads = 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long y = 0; y < rows; y++) {
        const float *row = in + y * width * cin;
        float *o = out + y * width * 3;
        long x = 1;
        narrow_pixel(row, width, cin, 0, w, b, o);
        for (; x + 4 <= width - 1; x += 4) narrow_tile(row + x * cin, width, cin, w, b, o + x * 3);
        for (; x < width; x++) narrow_pixel(row, width, cin, x, w, b, o + x * 3);
    }
}
