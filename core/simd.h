/*
 * simd.h — the vector vocabulary of the own kernels' templates (the *_impl.h files of
 * direct, dgrad, wgrad, blocked, blocked_wgrad and packgemm), one set per ISA and dtype. Include it
 * with SIMD_SEL defined (1 AVX-512F float32, 2 AVX-512F float64, 3 AVX2+FMA float32, 4 AVX2+FMA
 * float64), then the template: it defines T, SFX (suffix _avx512_f32 ... _avx2_f64), SIMD_TARGET,
 * SIMD_WIDE (1 for 32 vector registers), VL lanes of VEC, MASK (a lane mask: __mmask on
 * AVX-512, a vector of all-ones lanes on AVX2, built by V_TAIL(lanes) for lanes 0 .. lanes-1
 * and V_RANGE(a, b) for lanes a .. b-1, 0 <= a <= b <= VL) and V_* (V_MFMA(a, b, c, m):
 * a*b + c in the lanes of m, c in the others, whatever a and b hold there;
 * V_TRSQ(s, lds, d, ldd): d[i*ldd + l] = s[l*lds + i] for a VL x VL square, by shuffles in
 * registers: VL gathers cost several times as much, a gather being microcoded on CPUs with
 * the Downfall fix, this Ice Lake among them; V_TRBAND below, a band of VL rows), after
 * undefining the previous set. x86-64 with GCC or Clang only.
 */
#include <immintrin.h>
#include <stdint.h>

#undef T
#undef SFX
#undef SIMD_TARGET
#undef SIMD_WIDE
#undef VL
#undef VEC
#undef MASK
#undef V_TAIL
#undef V_LOAD
#undef V_MLOAD
#undef V_SET1
#undef V_ZERO
#undef V_FMA
#undef V_MUL
#undef V_ADD
#undef V_MADD
#undef V_RANGE
#undef V_MMERGE
#undef V_MFMA
#undef V_MOR
#undef V_STORE
#undef V_STREAM
#undef V_MSTORE
#undef V_UNORD
#undef V_EVENS
#undef V_HSUM
#undef V_TRSQ

#if SIMD_SEL == 1 || SIMD_SEL == 2
#define SIMD_TARGET        __attribute__((target("avx512f")))
#define SIMD_WIDE          1
#define V_TAIL(rem)        (MASK)((rem) >= VL ? ~0u : (1u << (rem)) - 1)
#define V_MADD(c, m, v)    V_MASK_ADD(c, m, c, v)
#define V_MLOAD(p, m)      V_MASKZ_LOAD(m, p)
#define V_MSTORE(p, m, v)  V_MASK_STORE(p, m, v)
#define V_RANGE(a, b)      (MASK)(V_TAIL(b) & ~V_TAIL(a))
#define V_MMERGE(v, p, m)  V_MASK_LOAD(v, m, p)
#define V_MFMA(a, b, c, m) V_MASK3_FMA(a, b, c, m)
#define V_MOR(a, b)        (MASK)((a) | (b))
#else
#define SIMD_TARGET __attribute__((target("avx2,fma")))
#define SIMD_WIDE   0
#endif

#if SIMD_SEL == 1
#define T      float
#define SFX(n) n##_avx512_f32
#define VL     16
#define VEC    __m512
#define MASK   __mmask16
#undef V_MASK_ADD
#undef V_MASKZ_LOAD
#undef V_MASK_STORE
#undef V_MASK_LOAD
#undef V_MASK3_FMA
#define V_MASK_LOAD  _mm512_mask_loadu_ps
#define V_MASK3_FMA  _mm512_mask3_fmadd_ps
#define V_MASK_ADD   _mm512_mask_add_ps
#define V_MASKZ_LOAD _mm512_maskz_loadu_ps
#define V_MASK_STORE _mm512_mask_storeu_ps
#define V_LOAD       _mm512_loadu_ps
#define V_SET1       _mm512_set1_ps
#define V_ZERO       _mm512_setzero_ps
#define V_FMA        _mm512_fmadd_ps
#define V_MUL        _mm512_mul_ps
#define V_ADD        _mm512_add_ps
#define V_STORE      _mm512_storeu_ps
#define V_STREAM     _mm512_stream_ps
#define V_UNORD(v)   _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q)
#define V_HSUM       _mm512_reduce_add_ps
#define V_TRSQ       simd_tr_avx512_f32
#ifndef SIMD_TR_AVX512_F32
#define SIMD_TR_AVX512_F32
/* Pairs, then quads within 128-bit lanes; then lane L of the quads of columns m, 4+m, 8+m
 * and 12+m, gathered across the four row groups, is column 4L+m. */
static inline __attribute__((always_inline, target("avx512f"))) void
simd_tr_avx512_f32(const float *s, int64_t lds, float *d, int64_t ldd)
{
    __m512 r[16];
    _Pragma("GCC unroll 16") for (int l = 0; l < 16; l++) r[l] = _mm512_loadu_ps(s + l * lds);
    __m512 t[16], u[16];
    _Pragma("GCC unroll 16") for (int k = 0; k < 16; k += 2)
    {
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    _Pragma("GCC unroll 16") for (int k = 0; k < 16; k += 4)
    {
        u[k] = _mm512_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm512_shuffle_ps(t[k], t[k + 2], 0xEE);
        u[k + 2] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm512_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    _Pragma("GCC unroll 16") for (int m = 0; m < 4; m++)
    {
        const __m512 v0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
        const __m512 v1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
        r[m] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[4 + m] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        r[8 + m] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
    _Pragma("GCC unroll 16") for (int l = 0; l < 16; l++) _mm512_storeu_ps(d + l * ldd, r[l]);
}
#endif
#define V_EVENS(a, b)                                                                              \
    _mm512_permutex2var_ps(                                                                        \
        a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b)
#elif SIMD_SEL == 2
#define T      double
#define SFX(n) n##_avx512_f64
#define VL     8
#define VEC    __m512d
#define MASK   __mmask8
#undef V_MASK_ADD
#undef V_MASKZ_LOAD
#undef V_MASK_STORE
#undef V_MASK_LOAD
#undef V_MASK3_FMA
#define V_MASK_LOAD  _mm512_mask_loadu_pd
#define V_MASK3_FMA  _mm512_mask3_fmadd_pd
#define V_MASK_ADD   _mm512_mask_add_pd
#define V_MASKZ_LOAD _mm512_maskz_loadu_pd
#define V_MASK_STORE _mm512_mask_storeu_pd
#define V_LOAD       _mm512_loadu_pd
#define V_SET1       _mm512_set1_pd
#define V_ZERO       _mm512_setzero_pd
#define V_FMA        _mm512_fmadd_pd
#define V_MUL        _mm512_mul_pd
#define V_ADD        _mm512_add_pd
#define V_STORE      _mm512_storeu_pd
#define V_STREAM     _mm512_stream_pd
#define V_UNORD(v)   _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q)
#define V_HSUM       _mm512_reduce_add_pd
#define V_TRSQ       simd_tr_avx512_f64
#ifndef SIMD_TR_AVX512_F64
#define SIMD_TR_AVX512_F64
/* Pairs within 128-bit lanes; lane L of the pairs of columns m, 2+m, 4+m and 6+m is then
 * column 2L+m. */
static inline __attribute__((always_inline, target("avx512f"))) void
simd_tr_avx512_f64(const double *s, int64_t lds, double *d, int64_t ldd)
{
    __m512d r[8];
    _Pragma("GCC unroll 16") for (int l = 0; l < 8; l++) r[l] = _mm512_loadu_pd(s + l * lds);
    __m512d t[8];
    _Pragma("GCC unroll 16") for (int k = 0; k < 8; k += 2)
    {
        t[k] = _mm512_unpacklo_pd(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_pd(r[k], r[k + 1]);
    }
    _Pragma("GCC unroll 16") for (int m = 0; m < 2; m++)
    {
        const __m512d v0 = _mm512_shuffle_f64x2(t[m], t[2 + m], 0x44);
        const __m512d v1 = _mm512_shuffle_f64x2(t[m], t[2 + m], 0xEE);
        const __m512d w0 = _mm512_shuffle_f64x2(t[4 + m], t[6 + m], 0x44);
        const __m512d w1 = _mm512_shuffle_f64x2(t[4 + m], t[6 + m], 0xEE);
        r[m] = _mm512_shuffle_f64x2(v0, w0, 0x88);
        r[2 + m] = _mm512_shuffle_f64x2(v0, w0, 0xDD);
        r[4 + m] = _mm512_shuffle_f64x2(v1, w1, 0x88);
        r[6 + m] = _mm512_shuffle_f64x2(v1, w1, 0xDD);
    }
    _Pragma("GCC unroll 16") for (int l = 0; l < 8; l++) _mm512_storeu_pd(d + l * ldd, r[l]);
}
#endif
#define V_EVENS(a, b) _mm512_permutex2var_pd(a, _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14), b)
#elif SIMD_SEL == 3
/* the even elements of two vectors: a shuffle within 128-bit lanes, then across them */
#define T      float
#define SFX(n) n##_avx2_f32
#define VL     8
#define VEC    __m256
#define MASK   __m256i
#define V_TAIL(rem)                                                                                \
    _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(rem)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define V_LOAD             _mm256_loadu_ps
#define V_MLOAD(p, m)      _mm256_maskload_ps(p, m)
#define V_SET1             _mm256_set1_ps
#define V_ZERO             _mm256_setzero_ps
#define V_FMA              _mm256_fmadd_ps
#define V_MUL              _mm256_mul_ps
#define V_ADD              _mm256_add_ps
#define V_MADD(c, m, v)    _mm256_add_ps(c, _mm256_and_ps(_mm256_castsi256_ps(m), v))
#define V_STORE            _mm256_storeu_ps
#define V_STREAM           _mm256_stream_ps
#define V_MSTORE(p, m, v)  _mm256_maskstore_ps(p, m, v)
#define V_RANGE(a, b)      _mm256_andnot_si256(V_TAIL(a), V_TAIL(b))
#define V_MMERGE(v, p, m)  _mm256_blendv_ps(v, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))
#define V_MOR(a, b)        _mm256_or_si256(a, b)
#define V_MFMA(a, b, c, m) _mm256_fmadd_ps(a, _mm256_and_ps(b, _mm256_castsi256_ps(m)), c)
#define V_UNORD(v)         _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))
#define V_HSUM             simd_hsum_avx2_f32
#define V_TRSQ             simd_tr_avx2_f32
#ifndef SIMD_TR_AVX2_F32
#define SIMD_TR_AVX2_F32
static inline __attribute__((always_inline, target("avx2,fma"))) void
simd_tr_avx2_f32(const float *s, int64_t lds, float *d, int64_t ldd)
{
    __m256 r[8];
    _Pragma("GCC unroll 16") for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(s + l * lds);
    __m256 t[8], u[8];
    _Pragma("GCC unroll 16") for (int k = 0; k < 8; k += 2)
    {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    _Pragma("GCC unroll 16") for (int k = 0; k < 8; k += 4)
    {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    _Pragma("GCC unroll 16") for (int m = 0; m < 4; m++)
    {
        r[m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x20);
        r[4 + m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x31);
    }
    _Pragma("GCC unroll 16") for (int l = 0; l < 8; l++) _mm256_storeu_ps(d + l * ldd, r[l]);
}
#endif
#define V_EVENS(a, b)                                                                              \
    _mm256_castpd_ps(                                                                              \
        _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))),  \
                              _MM_SHUFFLE(3, 1, 2, 0)))
#ifndef SIMD_HSUM_AVX2_F32
#define SIMD_HSUM_AVX2_F32
static inline __attribute__((target("avx2,fma"))) float simd_hsum_avx2_f32(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif
#elif SIMD_SEL == 4
#define T                  double
#define SFX(n)             n##_avx2_f64
#define VL                 4
#define VEC                __m256d
#define MASK               __m256i
#define V_TAIL(rem)        _mm256_cmpgt_epi64(_mm256_set1_epi64x(rem), _mm256_setr_epi64x(0, 1, 2, 3))
#define V_LOAD             _mm256_loadu_pd
#define V_MLOAD(p, m)      _mm256_maskload_pd(p, m)
#define V_SET1             _mm256_set1_pd
#define V_ZERO             _mm256_setzero_pd
#define V_FMA              _mm256_fmadd_pd
#define V_MUL              _mm256_mul_pd
#define V_ADD              _mm256_add_pd
#define V_MADD(c, m, v)    _mm256_add_pd(c, _mm256_and_pd(_mm256_castsi256_pd(m), v))
#define V_STORE            _mm256_storeu_pd
#define V_STREAM           _mm256_stream_pd
#define V_MSTORE(p, m, v)  _mm256_maskstore_pd(p, m, v)
#define V_RANGE(a, b)      _mm256_andnot_si256(V_TAIL(a), V_TAIL(b))
#define V_MMERGE(v, p, m)  _mm256_blendv_pd(v, _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m))
#define V_MOR(a, b)        _mm256_or_si256(a, b)
#define V_MFMA(a, b, c, m) _mm256_fmadd_pd(a, _mm256_and_pd(b, _mm256_castsi256_pd(m)), c)
#define V_UNORD(v)         _mm256_movemask_pd(_mm256_cmp_pd(v, v, _CMP_UNORD_Q))
#define V_HSUM             simd_hsum_avx2_f64
#define V_TRSQ             simd_tr_avx2_f64
#ifndef SIMD_TR_AVX2_F64
#define SIMD_TR_AVX2_F64
static inline __attribute__((always_inline, target("avx2,fma"))) void
simd_tr_avx2_f64(const double *s, int64_t lds, double *d, int64_t ldd)
{
    __m256d r[4];
    _Pragma("GCC unroll 16") for (int l = 0; l < 4; l++) r[l] = _mm256_loadu_pd(s + l * lds);
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
    _Pragma("GCC unroll 16") for (int l = 0; l < 4; l++) _mm256_storeu_pd(d + l * ldd, r[l]);
}
#endif
#define V_EVENS(a, b) _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0))
#ifndef SIMD_HSUM_AVX2_F64
#define SIMD_HSUM_AVX2_F64
static inline __attribute__((target("avx2,fma"))) double simd_hsum_avx2_f64(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
#endif
#else
#error "simd.h: SIMD_SEL must be 1 to 4"
#endif

/* V_TRBAND(s, lds, lanes, n, d, ldd): d[i*ldd + l] = l < lanes ? s[l*lds + i] : 0 for
 * i < n, l < VL (only the lanes rows of s are read): whole VL x VL squares by V_TRSQ,
 * the rest element by element, 64 columns at a time so the part of d written stays in L1
 * across the VL passes. */
#undef V_TRBAND
#define V_TRBAND SFX(simd_trband)
static inline SIMD_TARGET void SFX(simd_trband)(const T *s, int64_t lds, int64_t lanes, int64_t n,
                                                T *d, int64_t ldd)
{
    int64_t i0 = 0;
    if (lanes == VL)
        for (; i0 + VL <= n; i0 += VL)
            V_TRSQ(s + i0, lds, d + i0 * ldd, ldd);
    for (int64_t c0 = i0; c0 < n; c0 += 64) {
        const int64_t c1 = c0 + 64 < n ? c0 + 64 : n;
        for (int64_t l = 0; l < VL; l++)
            for (int64_t i = c0; i < c1; i++)
                d[i * ldd + l] = l < lanes ? s[l * lds + i] : 0;
    }
}
#undef SIMD_SEL
