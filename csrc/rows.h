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

/* 8-bit order statistics without a histogram (x86-64): counts[k] += the number of pixels of
 * a contiguous row that are >= thr[k] (thr[k] in 1..255, K thresholds), with byte compares
 * accumulated in 8-bit lanes (flushed with PSADBW every 255 vectors). Four such passes of
 * 2 bits each (3 thresholds, then 2 x 3 per pass for the two ranks) pin down two ranks
 * exactly; unlike a scattered histogram their cost does not depend on the pixel values. */
#if defined(__GNUC__) && defined(__x86_64__)
#define SEMEDGE_HAVE_COUNT_GE 1

#define SEMEDGE_COUNT_GE_TAIL                                        \
    for (; i < n; ++i)                                               \
        for (int k = 0; k < K; ++k) counts[k] += row[i] >= thr[k]

__attribute__((target("avx2"), always_inline)) static inline void semedge_count_ge_avx2_k(
    const uint8_t *restrict row, ptrdiff_t n, const uint8_t *thr, uint64_t *restrict counts,
    const int K) {
    const __m256i bias = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
    __m256i t[6], acc[6], sum[6];
    for (int k = 0; k < K; ++k) {
        t[k] = _mm256_set1_epi8((char)((thr[k] - 1) ^ 0x80)); /* x >= thr  <=>  x > thr - 1 */
        sum[k] = zero;
    }
    ptrdiff_t i = 0;
    while (i + 32 <= n) {
        ptrdiff_t stop = n - i > 255 * 32 ? i + 255 * 32 : n;
        for (int k = 0; k < K; ++k) acc[k] = zero;
        for (; i + 32 <= stop; i += 32) {
            __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + i)), bias);
            for (int k = 0; k < K; ++k) acc[k] = _mm256_sub_epi8(acc[k], _mm256_cmpgt_epi8(x, t[k]));
        }
        for (int k = 0; k < K; ++k) sum[k] = _mm256_add_epi64(sum[k], _mm256_sad_epu8(acc[k], zero));
    }
    for (int k = 0; k < K; ++k) {
        uint64_t lanes[4];
        _mm256_storeu_si256((__m256i *)lanes, sum[k]);
        counts[k] += lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
    SEMEDGE_COUNT_GE_TAIL;
}

__attribute__((always_inline)) static inline void semedge_count_ge_sse2_k(
    const uint8_t *restrict row, ptrdiff_t n, const uint8_t *thr, uint64_t *restrict counts,
    const int K) {
    const __m128i bias = _mm_set1_epi8((char)0x80), zero = _mm_setzero_si128();
    __m128i t[6], acc[6], sum[6];
    for (int k = 0; k < K; ++k) {
        t[k] = _mm_set1_epi8((char)((thr[k] - 1) ^ 0x80));
        sum[k] = zero;
    }
    ptrdiff_t i = 0;
    while (i + 16 <= n) {
        ptrdiff_t stop = n - i > 255 * 16 ? i + 255 * 16 : n;
        for (int k = 0; k < K; ++k) acc[k] = zero;
        for (; i + 16 <= stop; i += 16) {
            __m128i x = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(row + i)), bias);
            for (int k = 0; k < K; ++k) acc[k] = _mm_sub_epi8(acc[k], _mm_cmpgt_epi8(x, t[k]));
        }
        for (int k = 0; k < K; ++k) sum[k] = _mm_add_epi64(sum[k], _mm_sad_epu8(acc[k], zero));
    }
    for (int k = 0; k < K; ++k) {
        uint64_t lanes[2];
        _mm_storeu_si128((__m128i *)lanes, sum[k]);
        counts[k] += lanes[0] + lanes[1];
    }
    SEMEDGE_COUNT_GE_TAIL;
}

/* 16-bit images spread over a wide range (where a 65536-bin histogram misses L1 on every
 * pixel): the same counts on the high bytes (x >> 8 >= thr[k]; 32 pixels per step, packed to
 * bytes in a permuted order: only counts matter), then a histogram of the low bytes of only
 * the pixels whose high byte is hb0 (fine[0..255]) or hb1 (fine[256..511]), found by a
 * vector compare; 4 interleaved copies (stride 512) keep runs of equal pixels apart. */
__attribute__((target("avx2"), always_inline)) static inline void semedge_count_ge_hi_avx2_k(
    const uint16_t *restrict row, ptrdiff_t n, const uint8_t *thr, uint64_t *restrict counts,
    const int K) {
    const __m256i bias = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
    __m256i t[6], acc[6], sum[6];
    for (int k = 0; k < K; ++k) {
        t[k] = _mm256_set1_epi8((char)((thr[k] - 1) ^ 0x80));
        sum[k] = zero;
    }
    ptrdiff_t i = 0;
    while (i + 32 <= n) {
        ptrdiff_t stop = n - i > 255 * 32 ? i + 255 * 32 : n;
        for (int k = 0; k < K; ++k) acc[k] = zero;
        for (; i + 32 <= stop; i += 32) {
            __m256i a = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(row + i)), 8);
            __m256i b = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(row + i + 16)), 8);
            __m256i x = _mm256_xor_si256(_mm256_packus_epi16(a, b), bias);
            for (int k = 0; k < K; ++k) acc[k] = _mm256_sub_epi8(acc[k], _mm256_cmpgt_epi8(x, t[k]));
        }
        for (int k = 0; k < K; ++k) sum[k] = _mm256_add_epi64(sum[k], _mm256_sad_epu8(acc[k], zero));
    }
    for (int k = 0; k < K; ++k) {
        uint64_t lanes[4];
        _mm256_storeu_si256((__m256i *)lanes, sum[k]);
        counts[k] += lanes[0] + lanes[1] + lanes[2] + lanes[3];
    }
    for (; i < n; ++i)
        for (int k = 0; k < K; ++k) counts[k] += (row[i] >> 8) >= thr[k];
}

__attribute__((always_inline)) static inline void semedge_count_ge_hi_sse2_k(
    const uint16_t *restrict row, ptrdiff_t n, const uint8_t *thr, uint64_t *restrict counts,
    const int K) {
    const __m128i bias = _mm_set1_epi8((char)0x80), zero = _mm_setzero_si128();
    __m128i t[6], acc[6], sum[6];
    for (int k = 0; k < K; ++k) {
        t[k] = _mm_set1_epi8((char)((thr[k] - 1) ^ 0x80));
        sum[k] = zero;
    }
    ptrdiff_t i = 0;
    while (i + 16 <= n) {
        ptrdiff_t stop = n - i > 255 * 16 ? i + 255 * 16 : n;
        for (int k = 0; k < K; ++k) acc[k] = zero;
        for (; i + 16 <= stop; i += 16) {
            __m128i a = _mm_srli_epi16(_mm_loadu_si128((const __m128i *)(row + i)), 8);
            __m128i b = _mm_srli_epi16(_mm_loadu_si128((const __m128i *)(row + i + 8)), 8);
            __m128i x = _mm_xor_si128(_mm_packus_epi16(a, b), bias);
            for (int k = 0; k < K; ++k) acc[k] = _mm_sub_epi8(acc[k], _mm_cmpgt_epi8(x, t[k]));
        }
        for (int k = 0; k < K; ++k) sum[k] = _mm_add_epi64(sum[k], _mm_sad_epu8(acc[k], zero));
    }
    for (int k = 0; k < K; ++k) {
        uint64_t lanes[2];
        _mm_storeu_si128((__m128i *)lanes, sum[k]);
        counts[k] += lanes[0] + lanes[1];
    }
    for (; i < n; ++i)
        for (int k = 0; k < K; ++k) counts[k] += (row[i] >> 8) >= thr[k];
}

__attribute__((target("avx2"))) static void semedge_count_ge_hi3_avx2(const uint16_t *row, ptrdiff_t n, const uint8_t *thr, uint64_t *counts) {
    semedge_count_ge_hi_avx2_k(row, n, thr, counts, 3);
}
__attribute__((target("avx2"))) static void semedge_count_ge_hi6_avx2(const uint16_t *row, ptrdiff_t n, const uint8_t *thr, uint64_t *counts) {
    semedge_count_ge_hi_avx2_k(row, n, thr, counts, 6);
}

/* nthr: 3 or 6 */
static void semedge_count_ge_hi_u16(const uint16_t *row, ptrdiff_t n, const uint8_t *thr, int nthr,
                                    uint64_t *counts) {
    if (semedge_use_avx2) {
        if (nthr == 3) semedge_count_ge_hi3_avx2(row, n, thr, counts);
        else semedge_count_ge_hi6_avx2(row, n, thr, counts);
    } else {
        if (nthr == 3) semedge_count_ge_hi_sse2_k(row, n, thr, counts, 3);
        else semedge_count_ge_hi_sse2_k(row, n, thr, counts, 6);
    }
}

static inline void semedge_fine_add(unsigned v, unsigned lane, unsigned hb0, uint32_t *fine) {
    fine[(lane & 3) * 512 + ((v >> 8) == hb0 ? 0 : 256) + (v & 255)]++;
}

/* movemask of 16-bit compares: 2 bits per hit lane; ctz / 2 is the lane, clear both bits. */
#define SEMEDGE_FINE_HITS(m, base)                                   \
    while (m) {                                                      \
        unsigned j_ = (unsigned)__builtin_ctz(m) >> 1;               \
        semedge_fine_add(row[(base) + j_], j_, hb0, fine);           \
        m &= m - 1;                                                  \
        m &= m - 1;                                                  \
    }

__attribute__((target("avx2"))) static void semedge_hist_fine_u16_avx2(
    const uint16_t *restrict row, ptrdiff_t n, unsigned hb0, unsigned hb1, uint32_t *restrict fine) {
    const __m256i v0 = _mm256_set1_epi16((short)hb0), v1 = _mm256_set1_epi16((short)hb1);
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i c = _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(row + i)), 8);
        unsigned m = (unsigned)_mm256_movemask_epi8(
            _mm256_or_si256(_mm256_cmpeq_epi16(c, v0), _mm256_cmpeq_epi16(c, v1)));
        SEMEDGE_FINE_HITS(m, i)
    }
    for (; i < n; ++i)
        if ((row[i] >> 8) == hb0 || (row[i] >> 8) == hb1) semedge_fine_add(row[i], 0, hb0, fine);
}

static void semedge_hist_fine_u16_sse2(const uint16_t *restrict row, ptrdiff_t n, unsigned hb0,
                                       unsigned hb1, uint32_t *restrict fine) {
    const __m128i v0 = _mm_set1_epi16((short)hb0), v1 = _mm_set1_epi16((short)hb1);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i c = _mm_srli_epi16(_mm_loadu_si128((const __m128i *)(row + i)), 8);
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi16(c, v0), _mm_cmpeq_epi16(c, v1)));
        SEMEDGE_FINE_HITS(m, i)
    }
    for (; i < n; ++i)
        if ((row[i] >> 8) == hb0 || (row[i] >> 8) == hb1) semedge_fine_add(row[i], 0, hb0, fine);
}

/* fine: 4 * 512 counters, zeroed by the caller */
static void semedge_hist_fine_u16(const uint16_t *row, ptrdiff_t n, unsigned hb0, unsigned hb1,
                                  uint32_t *fine) {
    if (semedge_use_avx2) semedge_hist_fine_u16_avx2(row, n, hb0, hb1, fine);
    else semedge_hist_fine_u16_sse2(row, n, hb0, hb1, fine);
}

__attribute__((target("avx2"))) static void semedge_count_ge3_avx2(const uint8_t *row, ptrdiff_t n, const uint8_t *thr, uint64_t *counts) {
    semedge_count_ge_avx2_k(row, n, thr, counts, 3);
}
__attribute__((target("avx2"))) static void semedge_count_ge6_avx2(const uint8_t *row, ptrdiff_t n, const uint8_t *thr, uint64_t *counts) {
    semedge_count_ge_avx2_k(row, n, thr, counts, 6);
}
static void semedge_count_ge3_sse2(const uint8_t *row, ptrdiff_t n, const uint8_t *thr, uint64_t *counts) {
    semedge_count_ge_sse2_k(row, n, thr, counts, 3);
}
static void semedge_count_ge6_sse2(const uint8_t *row, ptrdiff_t n, const uint8_t *thr, uint64_t *counts) {
    semedge_count_ge_sse2_k(row, n, thr, counts, 6);
}

/* nthr: 3 or 6 (at most 6 keeps thresholds and accumulators in the 16 vector registers) */
static void semedge_count_ge_u8(const uint8_t *row, ptrdiff_t n, const uint8_t *thr, int nthr,
                                uint64_t *counts) {
    if (nthr == 3) {
        if (semedge_use_avx2) semedge_count_ge3_avx2(row, n, thr, counts);
        else semedge_count_ge3_sse2(row, n, thr, counts);
    } else {
        if (semedge_use_avx2) semedge_count_ge6_avx2(row, n, thr, counts);
        else semedge_count_ge6_sse2(row, n, thr, counts);
    }
}
#else
#define SEMEDGE_HAVE_COUNT_GE 0 /* the histograms are used instead; these keep the module linking */
static void semedge_count_ge_u8(const uint8_t *row, ptrdiff_t n, const uint8_t *thr, int nthr,
                                uint64_t *counts) {
    for (ptrdiff_t i = 0; i < n; ++i)
        for (int k = 0; k < nthr; ++k) counts[k] += row[i] >= thr[k];
}
static void semedge_count_ge_hi_u16(const uint16_t *row, ptrdiff_t n, const uint8_t *thr, int nthr,
                                    uint64_t *counts) {
    for (ptrdiff_t i = 0; i < n; ++i)
        for (int k = 0; k < nthr; ++k) counts[k] += (row[i] >> 8) >= thr[k];
}
static void semedge_hist_fine_u16(const uint16_t *row, ptrdiff_t n, unsigned hb0, unsigned hb1,
                                  uint32_t *fine) {
    for (ptrdiff_t i = 0; i < n; ++i)
        if ((row[i] >> 8) == hb0 || (row[i] >> 8) == hb1)
            fine[((row[i] >> 8) == hb0 ? 0 : 256) + (row[i] & 255)]++;
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

/* 16-bit: 4 interleaved sub-histograms of 65536 bins, like 8-bit. On x86-64 this path only
 * sees narrow images (or strided ones): a few thousand touched bins per copy stay in cache,
 * and runs of equal pixels (flat regions, saturation) do not serialize on one counter. */
#define SEMEDGE_U16_LANES 4
static void semedge_hist_row_u16(const uint16_t *restrict row, ptrdiff_t n, uint32_t *restrict hist) {
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint64_t w;
        __builtin_memcpy(&w, row + i, 8);
        hist[w & 0xffff]++;
        hist[65536 + ((w >> 16) & 0xffff)]++;
        hist[131072 + ((w >> 32) & 0xffff)]++;
        hist[196608 + ((w >> 48) & 0xffff)]++;
    }
    for (; i < n; ++i) hist[row[i]]++;
}

#endif
