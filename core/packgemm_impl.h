/*
 * packgemm_impl.h — template of the packed GEMM, included by packgemm.c once per ISA and
 * dtype after simd.h. Generates, for SFX = _avx512_f32, _avx512_f64, _avx2_f32,
 * _avx2_f64: pg_tile, pg_tile_any, pg_pack_b, pg_pack_at and pg_run (pg_run_avx512_f32 ...
 * pg_run_avx2_f64). See packgemm.c for the method and the blocking.
 */

#define PG_MR (SIMD_WIDE ? PG_MR_WIDE : PG_MR_NARROW)
#define PG_NR (PG_NV * VL)

/* One register tile: C[0..mr) x [0..nn) = alpha * op(A)·Bp + beta * C over kc steps,
 * op(A)[m][k] at a[m*rs + k*cs] (read in place: rs, cs = lda, 1 or 1, lda), Bp kc steps
 * of PG_NR values (zero-padded past nn by the packing). Rows past mr read row mr-1 again
 * (never past A) and are not stored. full and nv are constants after inlining: full,
 * mr == PG_MR and nn == PG_NR (no masks); nv, the vectors computed (those past nn are
 * skipped, so a narrow last panel costs what it holds). beta == 0 never reads C, as BLAS: C may
 * hold anything, NaN included. With bias (rows' values, bias[m] for row m of the tile) C is
 * alpha·op(A)·Bp + bias[m] instead, C not read; with chk every value stored adds v*0 to *chk
 * (NaN exactly when one is not finite), while it is still in a register. */
static inline __attribute__((always_inline)) SIMD_TARGET void
SFX(pg_tile)(const int full, const int nv, int64_t kc, const T *a, int64_t rs, int64_t cs,
             const T *restrict bp, T *c, int64_t ldc, int mr, int64_t nn, T alpha, T beta,
             const T *bias, VEC *chk, int stream)
{
    VEC acc[PG_MR][PG_NV];
    int64_t ro[PG_MR];
    _Pragma("GCC unroll 8") for (int m = 0; m < PG_MR; m++)
    {
        ro[m] = (full || m < mr ? m : mr - 1) * rs;
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) acc[m][v] = V_ZERO();
    }
    _Pragma("GCC unroll 2") for (int64_t k = 0; k < kc; k++)
    {
        VEC bv[PG_NV];
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) bv[v] = V_LOAD(bp + v * VL);
        _Pragma("GCC unroll 8") for (int m = 0; m < PG_MR; m++)
        {
            const VEC av = V_SET1(a[ro[m]]);
            _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++) acc[m][v] =
                V_FMA(av, bv[v], acc[m][v]);
        }
        a += cs;
        bp += PG_NR;
    }
    const VEC va = V_SET1(alpha), vb = V_SET1(beta), zero = V_ZERO();
    VEC ck = zero; /* local: stores to c could alias *chk */
    const int scale = alpha != 1, keep = beta != 0 && !bias;
    _Pragma("GCC unroll 8") for (int m = 0; m < PG_MR; m++)
    {
        if (!full && m >= mr)
            break;
        T *cr = c + m * ldc;
        const VEC vbias = bias ? V_SET1(bias[m]) : zero;
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)
        {
            VEC r = scale ? V_MUL(va, acc[m][v]) : acc[m][v];
            if (bias)
                r = V_ADD(vbias, r);
            if (full) {
                if (keep)
                    r = V_FMA(vb, V_LOAD(cr + v * VL), r);
                if (stream)
                    V_STREAM(cr + v * VL, r);
                else
                    V_STORE(cr + v * VL, r);
                if (chk)
                    ck = V_ADD(ck, V_MUL(r, zero));
            } else {
                const int64_t lanes = nn - (int64_t)v * VL;
                if (lanes <= 0)
                    break;
                const MASK mk = V_TAIL(lanes);
                if (keep)
                    r = V_FMA(vb, V_MLOAD(cr + v * VL, mk), r);
                V_MSTORE(cr + v * VL, mk, r);
                if (chk)
                    ck = V_MADD(ck, mk, V_MUL(r, zero));
            }
        }
    }
    if (chk)
        *chk = V_ADD(*chk, ck);
}

static SIMD_TARGET void SFX(pg_tile_any)(int64_t kc, const T *a, int64_t rs, int64_t cs,
                                         const T *bp, T *c, int64_t ldc, int mr, int64_t nn,
                                         T alpha, T beta, const T *bias, VEC *chk, int stream)
{
    if (mr == PG_MR && nn == PG_NR) {
        SFX(pg_tile)(1, PG_NV, kc, a, rs, cs, bp, c, ldc, mr, nn, alpha, beta, bias, chk, stream);
        return;
    }
    switch ((nn + VL - 1) / VL) {
    case 1:
        SFX(pg_tile)(0, 1, kc, a, rs, cs, bp, c, ldc, mr, nn, alpha, beta, bias, chk, stream);
        break;
    case 2:
        SFX(pg_tile)(0, 2, kc, a, rs, cs, bp, c, ldc, mr, nn, alpha, beta, bias, chk, stream);
        break;
    default:
        SFX(pg_tile)(0, PG_NV, kc, a, rs, cs, bp, c, ldc, mr, nn, alpha, beta, bias, chk, stream);
    }
}

/* Bp: steps p0 .. p0+kc-1 and columns j0 .. j0+nc-1 of op(B) in panels of PG_NR columns,
 * each kc steps of PG_NR values (columns past nc zero). */
static SIMD_TARGET void SFX(pg_pack_b)(int tb, const T *B, int64_t ldb, int64_t p0, int64_t kc,
                                       int64_t j0, int64_t nc, T *bp)
{
    const int64_t full = nc / PG_NR, rest = nc - full * PG_NR;
    if (!tb) {
        /* row by row, each read once from start to end (the prefetchers follow a row; a
         * panel at a time would jump ldb every PG_NR elements), scattered to the panels */
        for (int64_t k = 0; k < kc; k++) {
            const T *src = B + (p0 + k) * ldb + j0;
            T *dst = bp + k * PG_NR;
            for (int64_t j = 0; j < full; j++, src += PG_NR, dst += kc * PG_NR)
                _Pragma("GCC unroll 8") for (int v = 0; v < PG_NV; v++)
                    V_STORE(dst + v * VL, V_LOAD(src + v * VL));
            if (rest)
                _Pragma("GCC unroll 8") for (int v = 0; v < PG_NV; v++)
                {
                    const int64_t lanes = rest - (int64_t)v * VL;
                    V_STORE(dst + v * VL,
                            lanes > 0 ? V_MLOAD(src + v * VL, V_TAIL(lanes)) : V_ZERO());
                }
        }
        return;
    }
    /* op(B)[k][n] = B[n][k]: VL columns at a time, transposed (V_TRBAND) */
    for (int64_t j = 0; j < nc; j += PG_NR, bp += kc * PG_NR) {
        const int64_t nn = nc - j < PG_NR ? nc - j : PG_NR;
        for (int v = 0; v < PG_NV; v++) {
            const int64_t lanes = nn - (int64_t)v * VL;
            T *dst = bp + v * VL;
            if (lanes <= 0) {
                for (int64_t k = 0; k < kc; k++)
                    V_STORE(dst + k * PG_NR, V_ZERO());
                continue;
            }
            V_TRBAND(B + (j0 + j + v * VL) * ldb + p0, ldb, lanes < VL ? lanes : VL, kc, dst,
                     PG_NR);
        }
    }
}

/* Ap: rows i0 .. i0+mc-1 and steps p0 .. p0+kc-1 of a transposed op(A) (op(A)[m][k] =
 * A[k*lda + m]) in panels of PG_MR rows, each kc steps of PG_MR values (a partial panel's
 * missing rows repeat its last, as pg_tile reads them in place), so a tile reads A as one
 * stream instead of jumping lda a step. */
static SIMD_TARGET void SFX(pg_pack_at)(const T *A, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
                                        int64_t kc, T *ap)
{
    for (int64_t i = 0; i < mc; i += PG_MR, ap += kc * PG_MR) {
        const int64_t mr = mc - i < PG_MR ? mc - i : PG_MR;
        for (int64_t k = 0; k < kc; k++) {
            const T *src = A + (p0 + k) * lda + i0 + i;
            for (int64_t m = 0; m < PG_MR; m++)
                ap[k * PG_MR + m] = src[m < mr ? m : mr - 1];
        }
    }
}

/* C = alpha·op(A)·op(B) + beta·C on one thread, with bpk (pg_buffer_elems of T, 64-byte
 * aligned) for the packed blocks of B and A. With bias, C = alpha·op(A)·op(B) + bias[i]
 * on row i instead (beta unused). With check, the return is whether every value of C is
 * finite, checked as it is stored (else 1). K is cut into near-equal blocks of at most
 * kc steps (196 steps as 98 + 98, not 170 + 26: every block loads and stores C once).
 * op(A) is read in place, a tile's rows as MR streams, or as one stream when transposed;
 * a transposed A whose steps lie more than PG_STRIDE_MAX bytes apart is packed per block
 * of mc rows instead, when more than one panel of B will read it. */
static SIMD_TARGET int SFX(pg_run)(const pg_blocks *bk, int ta, int tb, int64_t M, int64_t N,
                                   int64_t K, T alpha, const T *A, int64_t lda, const T *B,
                                   int64_t ldb, T beta, T *C, int64_t ldc, T *bpk, const T *bias,
                                   int check)
{
    VEC chk = V_ZERO();
    /* An output written once (one block of steps) and larger than half of L2 cannot stay
     * cached for anyone: stored past the caches (non-temporal), it costs no read for
     * ownership. Whole vectors only: C and its rows 64-byte aligned (cvd_tensor_alloc). */
    const int stream = check && K <= bk->kc && (uintptr_t)C % 64 == 0 &&
                       ldc * (int64_t)sizeof(T) % 64 == 0 &&
                       (uint64_t)(M * N) * sizeof(T) >= cvd_cpu_l2() / 2;
    const int64_t rs = ta ? 1 : lda, cs = ta ? lda : 1;
    const int64_t nkb = (K + bk->kc - 1) / bk->kc, kcb = (K + nkb - 1) / nkb;
    T *apk = bpk + bk->kc * bk->nc;
    for (int64_t j0 = 0; j0 < N; j0 += bk->nc) {
        const int64_t nc = N - j0 < bk->nc ? N - j0 : bk->nc;
        const int pack_a = ta && lda * (int64_t)sizeof(T) > PG_STRIDE_MAX && nc > PG_NR;
        for (int64_t p0 = 0; p0 < K; p0 += kcb) {
            const int64_t kc = K - p0 < kcb ? K - p0 : kcb;
            const T b_eff = p0 == 0 ? beta : 1;
            /* the bias goes in with the first block of steps, the check with the last */
            const T *bias_k = p0 == 0 ? bias : NULL;
            VEC *chk_k = check && p0 + kc == K ? &chk : NULL;
            SFX(pg_pack_b)(tb, B, ldb, p0, kc, j0, nc, bpk);
            for (int64_t i0 = 0; i0 < M; i0 += bk->mc) {
                const int64_t mc = M - i0 < bk->mc ? M - i0 : bk->mc;
                if (pack_a)
                    SFX(pg_pack_at)(A, lda, i0, mc, p0, kc, apk);
                /* a panel of Bp stays in L1 while every tile of the row block passes */
                for (int64_t j = 0; j < nc; j += PG_NR) {
                    const int64_t nn = nc - j < PG_NR ? nc - j : PG_NR;
                    const T *bp = bpk + j / PG_NR * kc * PG_NR;
                    for (int64_t i = i0; i < i0 + mc; i += PG_MR) {
                        const int mr = (int)(i0 + mc - i < PG_MR ? i0 + mc - i : PG_MR);
                        /* the packed A is a panel of rows 1 apart, steps PG_MR apart */
                        const T *a = pack_a ? apk + (i - i0) * kc : A + i * rs + p0 * cs;
                        SFX(pg_tile_any)
                        (kc, a, pack_a ? 1 : rs, pack_a ? PG_MR : cs, bp, C + i * ldc + j0 + j, ldc,
                         mr, nn, alpha, b_eff, bias_k ? bias_k + i : NULL, chk_k, stream);
                    }
                }
            }
        }
    }
    if (stream) /* streaming stores are weakly ordered: visible before the caller's join */
        _mm_sfence();
    return V_UNORD(chk) == 0;
}

#undef PG_MR
#undef PG_NR
