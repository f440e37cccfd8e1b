/* Row kernels of semedge in plain C, so that on x86-64 GCC can build an AVX2 clone next to
 * the baseline one and pick at load time (the wheel stays runnable on any x86-64). */
#ifndef SEMEDGE_ROWS_H
#define SEMEDGE_ROWS_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SEMEDGE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SEMEDGE_CLONES
#endif

/* clip((v - lo) * inv_span, 0, 1) in float32: the one normalization formula. */
#define SEMEDGE_SCALE(v, lo, inv)                                  \
    do {                                                           \
        float x_ = ((float)(v) - (lo)) * (inv);                    \
        x_ = x_ > 0.0f ? x_ : 0.0f;                                \
        *dst++ = x_ < 1.0f ? x_ : 1.0f;                            \
    } while (0)

SEMEDGE_CLONES static void semedge_scale_row_u8(const uint8_t *restrict src, float *restrict dst,
                                                ptrdiff_t n, float lo, float inv) {
    for (ptrdiff_t i = 0; i < n; ++i) SEMEDGE_SCALE(src[i], lo, inv);
}

SEMEDGE_CLONES static void semedge_scale_row_u16(const uint16_t *restrict src, float *restrict dst,
                                                 ptrdiff_t n, float lo, float inv) {
    for (ptrdiff_t i = 0; i < n; ++i) SEMEDGE_SCALE(src[i], lo, inv);
}

/* Add a contiguous row to a histogram with 4 interleaved sub-histograms of `levels` bins, so
 * that runs of equal pixels do not serialize on one counter. */
static void semedge_hist_row_u8(const uint8_t *restrict row, ptrdiff_t n, uint32_t *restrict hist) {
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, row + i, 8);
        hist[(w >> 0) & 0xff]++;
        hist[256 + ((w >> 8) & 0xff)]++;
        hist[512 + ((w >> 16) & 0xff)]++;
        hist[768 + ((w >> 24) & 0xff)]++;
        hist[(w >> 32) & 0xff]++;
        hist[256 + ((w >> 40) & 0xff)]++;
        hist[512 + ((w >> 48) & 0xff)]++;
        hist[768 + ((w >> 56) & 0xff)]++;
    }
    for (; i < n; ++i) hist[row[i]]++;
}

/* 16-bit: one histogram (256 KiB: more copies would spill out of L2). */
static void semedge_hist_row_u16(const uint16_t *restrict row, ptrdiff_t n, uint32_t *restrict hist) {
    for (ptrdiff_t i = 0; i < n; ++i) hist[row[i]]++;
}

#endif
