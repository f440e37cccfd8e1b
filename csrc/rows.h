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
#define SEMEDGE_SCALE_AT(d, v, lo, inv)                            \
    do {                                                           \
        float x_ = ((float)(v) - (lo)) * (inv);                    \
        x_ = x_ > 0.0f ? x_ : 0.0f;                                \
        (d) = x_ < 1.0f ? x_ : 1.0f;                               \
    } while (0)

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

/* The same rows written with non-temporal (streaming) stores, for batches much larger than
 * the caches: the stores skip the read-for-ownership of the destination lines, which halves
 * the memory traffic of the tiling pass. x86-64 only (SSE2 is baseline there, AVX2 is picked
 * at run time); elsewhere they are the plain rows above. The vector code computes exactly the
 * scalar formula: (float)v - lo, times inv, then MAXPS(x, 0) = x > 0 ? x : 0 and
 * MINPS(x, 1) = x < 1 ? x : 1 (the operand order makes them the ternaries of SEMEDGE_SCALE),
 * no FMA. Call semedge_cpu_init() once (module import) before, semedge_stream_fence() after the last row. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define SEMEDGE_HAVE_STREAM 1

static int semedge_use_avx2 = 0;

static void semedge_cpu_init(void) {
#ifndef SEMEDGE_NO_AVX2 /* -DSEMEDGE_NO_AVX2 tests the SSE2 rows on an AVX2 machine */
    __builtin_cpu_init();
    semedge_use_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
#endif
}

static void semedge_stream_fence(void) { _mm_sfence(); }

#define SEMEDGE_STREAM_HEAD(src)                                                  \
    ptrdiff_t i = 0;                                                              \
    for (; i < n && ((uintptr_t)(dst + i) & 15); ++i) SEMEDGE_SCALE_AT(dst[i], (src)[i], lo, inv)

#define SEMEDGE_STREAM_TAIL(src) \
    for (; i < n; ++i) SEMEDGE_SCALE_AT(dst[i], (src)[i], lo, inv)

__attribute__((target("avx2"))) static void semedge_stream_row_u8_avx2(
    const uint8_t *restrict src, float *restrict dst, ptrdiff_t n, float lo, float inv) {
    SEMEDGE_STREAM_HEAD(src);
    const __m256 vlo = _mm256_set1_ps(lo), vinv = _mm256_set1_ps(inv);
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(src + i)));
        __m256 x = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(v), vlo), vinv);
        x = _mm256_min_ps(_mm256_max_ps(x, zero), one);
        _mm_stream_ps(dst + i, _mm256_castps256_ps128(x));  /* 16-byte aligned only */
        _mm_stream_ps(dst + i + 4, _mm256_extractf128_ps(x, 1));
    }
    SEMEDGE_STREAM_TAIL(src);
}

__attribute__((target("avx2"))) static void semedge_stream_row_u16_avx2(
    const uint16_t *restrict src, float *restrict dst, ptrdiff_t n, float lo, float inv) {
    SEMEDGE_STREAM_HEAD(src);
    const __m256 vlo = _mm256_set1_ps(lo), vinv = _mm256_set1_ps(inv);
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        __m256 x = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(v), vlo), vinv);
        x = _mm256_min_ps(_mm256_max_ps(x, zero), one);
        _mm_stream_ps(dst + i, _mm256_castps256_ps128(x));
        _mm_stream_ps(dst + i + 4, _mm256_extractf128_ps(x, 1));
    }
    SEMEDGE_STREAM_TAIL(src);
}

static void semedge_stream_row_u8_sse2(const uint8_t *restrict src, float *restrict dst,
                                       ptrdiff_t n, float lo, float inv) {
    SEMEDGE_STREAM_HEAD(src);
    const __m128 vlo = _mm_set1_ps(lo), vinv = _mm_set1_ps(inv);
    const __m128 zero = _mm_setzero_ps(), one = _mm_set1_ps(1.0f);
    const __m128i z = _mm_setzero_si128();
    for (; i + 4 <= n; i += 4) {
        int32_t w;
        __builtin_memcpy(&w, src + i, 4);
        __m128i v = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(w), z), z);
        __m128 x = _mm_mul_ps(_mm_sub_ps(_mm_cvtepi32_ps(v), vlo), vinv);
        _mm_stream_ps(dst + i, _mm_min_ps(_mm_max_ps(x, zero), one));
    }
    SEMEDGE_STREAM_TAIL(src);
}

static void semedge_stream_row_u16_sse2(const uint16_t *restrict src, float *restrict dst,
                                        ptrdiff_t n, float lo, float inv) {
    SEMEDGE_STREAM_HEAD(src);
    const __m128 vlo = _mm_set1_ps(lo), vinv = _mm_set1_ps(inv);
    const __m128 zero = _mm_setzero_ps(), one = _mm_set1_ps(1.0f);
    const __m128i z = _mm_setzero_si128();
    for (; i + 4 <= n; i += 4) {
        __m128i v = _mm_unpacklo_epi16(_mm_loadl_epi64((const __m128i *)(src + i)), z);
        __m128 x = _mm_mul_ps(_mm_sub_ps(_mm_cvtepi32_ps(v), vlo), vinv);
        _mm_stream_ps(dst + i, _mm_min_ps(_mm_max_ps(x, zero), one));
    }
    SEMEDGE_STREAM_TAIL(src);
}

static void semedge_stream_row_u8(const uint8_t *src, float *dst, ptrdiff_t n, float lo, float inv) {
    if (semedge_use_avx2) semedge_stream_row_u8_avx2(src, dst, n, lo, inv);
    else semedge_stream_row_u8_sse2(src, dst, n, lo, inv);
}

static void semedge_stream_row_u16(const uint16_t *src, float *dst, ptrdiff_t n, float lo, float inv) {
    if (semedge_use_avx2) semedge_stream_row_u16_avx2(src, dst, n, lo, inv);
    else semedge_stream_row_u16_sse2(src, dst, n, lo, inv);
}
#else
#define SEMEDGE_HAVE_STREAM 0
static void semedge_cpu_init(void) {}
static void semedge_stream_fence(void) {}
static void semedge_stream_row_u8(const uint8_t *src, float *dst, ptrdiff_t n, float lo, float inv) {
    semedge_scale_row_u8(src, dst, n, lo, inv);
}
static void semedge_stream_row_u16(const uint16_t *src, float *dst, ptrdiff_t n, float lo, float inv) {
    semedge_scale_row_u16(src, dst, n, lo, inv);
}
#endif

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
