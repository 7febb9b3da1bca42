//! Int8 GEMM micro-kernel, 6 rows x 8 output channels, AVX2 (`vpmaddwd`), with the exact
//! requantising epilogue.
//!
//! A rows are the int8 activations widened to i16 (done once when the A block is packed);
//! per 4-k group the kernel widens half a PackedN16K4 group (32 bytes: 8 channels x 4 k) into
//! two i16 vectors with `vpmovsxbw`, broadcasts each row's 4 activations (`vpbroadcastq`) and
//! accumulates `vpmaddwd` pair sums (|x*w| <= 128*128, a pair <= 2^15: exact for any i8,
//! including a -128 weight) with `vpaddd`:
//!
//! ```text
//! w0 = [c0k0 c0k1 c0k2 c0k3 | c1k0 .. c1k3 | c2k0 .. | c3k0 .. c3k3]  (i16, channels 0..3)
//! av = [a0 a1 a2 a3] x 4                                              (i16, row i)
//! madd(av, w0) = [c0:k01 c0:k23 c1:k01 c1:k23 | c2:k01 c2:k23 c3:k01 c3:k23]  (i32)
//! ```
//!
//! 12 accumulators (6 rows x 2 channel quads) + 2 weight vectors + 1 broadcast = 15 ymm. At
//! the end `vphaddd` + `vpermq` turn each row's two accumulators into 8 channel sums.
//!
//! The alternative, `vpmaddubsw` with the sign trick (`|a|` as u8 times `sign(w, a)`, exact
//! only because weights are never -128) on int8 A rows in a 4x16 tile, was measured in the
//! same runs (`i8micro` in `benches/benches/kernels_i8.rs`, K = 256 in L1, 1 thread, Zen 3,
//! medians, a loaded shared box): 22.6 GMAC/s for it without any epilogue vs 22.4 and 26.7
//! GMAC/s (two runs) for this kernel with its epilogue, so `vpmaddwd` stays: no faster
//! alternative, no restriction on the weights, and the i16 A rows the NEON kernels share.
//!
//! Epilogue, bit-identical to [`crate::kernels::int8::requant`]: i32 x i32 -> i64 with
//! `vpmuldq` on even and odd lanes, then
//! - when every channel of the tile has `shift >= 32` (the usual case), `HiShift`: the high
//!   dwords of the rounded i64 sums, shifted by `shift - 32` with `vpsravd`, `+ z_y` and the
//!   clamp on 8 i32 lanes at once (about 11 ops per 8 outputs instead of 28);
//! - when some shift is below 32 (typical of residual layers: `m_res` near 1 forces a small
//!   shift) but the driver proved [`crate::kernels::int8::requant_fits_lshift`] for the layer
//!   (`MicroTileI8::lshift_ok`), the same path after shifting those lanes' rounded i64 sums
//!   left by `32 - shift` (two `vpsllvq`); measured on ResNet-50 int8, 1 thread: the three
//!   56x56 residual 1x1 convs 1.69 -> 1.59 ms each;
//! - otherwise `requant8`: the per-channel arithmetic i64 shift emulated as
//!   `sign ^ ((t ^ sign) >>> shift)` (AVX2 has no `vpsravq`), the i64 clamp with `vpcmpgtq`
//!   + blends.

use core::arch::x86_64::*;

use crate::kernels::int8::pack::{KG, PANEL};
use crate::kernels::int8::{MicroTileI8, MR, NR};

/// AVX2 twin of [`crate::kernels::int8::generic::gemm_i8i32_6x8__generic`].
///
/// # Safety
/// The CPU must support AVX2, and `t` must satisfy the pointer contract documented on
/// [`MicroTileI8`] (A rows readable for `4*k4` i16, 32 bytes of `b` readable at every
/// `64*kk`, `qp` readable for `4*n` i32, y rows writable and residual rows readable for `n`
/// bytes). Weights may be any i8.
#[allow(non_snake_case)]
#[target_feature(enable = "avx2")]
pub unsafe fn gemm_i8i32_6x8__avx2(t: &MicroTileI8) {
    debug_assert!(t.m >= 1 && t.m <= MR && t.n >= 1 && t.n <= NR);
    // SAFETY: forwarded contract; each arm matches the row count.
    unsafe {
        match t.m {
            1 => tile::<1>(t),
            2 => tile::<2>(t),
            3 => tile::<3>(t),
            4 => tile::<4>(t),
            5 => tile::<5>(t),
            _ => tile::<6>(t),
        }
    }
}

/// # Safety
/// As [`gemm_i8i32_6x8__avx2`] with `m == M`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn tile<const M: usize>(t: &MicroTileI8) {
    let mut acc0 = [_mm256_setzero_si256(); M];
    let mut acc1 = [_mm256_setzero_si256(); M];
    let a: [*const i16; M] = core::array::from_fn(|i| t.a[i]);
    let mut b = t.b;
    // SAFETY: a[i] readable for 4*k4 i16, b for 32 bytes at each 64*kk (contract).
    unsafe {
        for kk in 0..t.k4 {
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b as *const __m128i));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(16) as *const __m128i));
            for i in 0..M {
                let av = _mm256_set1_epi64x(core::ptr::read_unaligned(a[i].add(kk * KG) as *const i64));
                acc0[i] = _mm256_add_epi32(acc0[i], _mm256_madd_epi16(av, w0));
                acc1[i] = _mm256_add_epi32(acc1[i], _mm256_madd_epi16(av, w1));
            }
            b = b.add(PANEL * KG);
        }
    }
    let n = t.n;
    // SAFETY: qp readable for 4*n i32 (contract).
    let q = unsafe { load_qparams(t.qp, n) };
    let z_y = _mm256_set1_epi64x(i64::from(t.z_y));
    let qmin = _mm256_set1_epi64x(i64::from(t.qmin));
    let qmax = _mm256_set1_epi64x(i64::from(t.qmax));
    let z_res = _mm256_set1_epi32(t.z_res);
    // Every shift >= 32 (the usual case: a multiplier M < 1 normalised to m >= 2^30): the
    // rounded shift is the arithmetic shift of the high dword (see `requant8_hi`).
    let fast = _mm256_movemask_epi8(_mm256_cmpgt_epi32(_mm256_set1_epi32(32), q.shift)) == 0;
    // Some shift < 32 (e.g. a residual multiplier near 1): the same path after a left shift,
    // when the caller proved it cannot overflow.
    let up = t.lshift_ok;
    // SAFETY: AVX2 available (contract).
    let hi = unsafe { HiShift::new(&q, t.z_y, t.qmin, t.qmax) };
    for i in 0..M {
        // hadd: [c0 c1 c4 c5 | c2 c3 c6 c7]; vpermq (0, 2, 1, 3) puts the channels in order.
        let sum = _mm256_permute4x64_epi64::<0xD8>(_mm256_hadd_epi32(acc0[i], acc1[i]));
        let s = _mm256_add_epi32(sum, q.bias);
        // SAFETY: row i < m of y (and of the residual when non-null) is valid for n bytes.
        unsafe {
            let v = if t.residual.is_null() {
                let rq = _mm256_setzero_si256();
                if fast {
                    hi.apply::<false, false>(s, rq)
                } else if up {
                    hi.apply::<false, true>(s, rq)
                } else {
                    requant8(s, q.m_acc, rq, q.m_res, q.shift, z_y, qmin, qmax)
                }
            } else {
                let rq = _mm256_sub_epi32(_mm256_cvtepi8_epi32(load8(t.residual.add(i * t.ldr), n)), z_res);
                if fast {
                    hi.apply::<true, false>(s, rq)
                } else if up {
                    hi.apply::<true, true>(s, rq)
                } else {
                    requant8(s, q.m_acc, rq, q.m_res, q.shift, z_y, qmin, qmax)
                }
            };
            store8(t.y.add(i * t.ldy), n, v);
        }
    }
}

/// The requantisation when every lane's shift is in [32, 62] (or, via `apply::<_, true>`,
/// when lanes with a smaller shift are first shifted left: see `apply`), prepared once per
/// tile.
///
/// `t + 2^(sh-1)` is formed in i64 as usual, but since `sh >= 32`,
/// `(t + r) >> sh == hi32(t + r) >> (sh - 32)` (floor of a floor), and `hi32` of the even and
/// odd products interleave into one vector with a single blend: the shift, `+ z_y` and the
/// clamp then run on 8 i32 lanes at once (`vpsravd`, `vpaddd`, `vpmaxsd`, `vpminsd`). No
/// i32 overflow: `|t + r| < 2^62 + 2^39 + 2^61`, so `|hi32| < 2^31 - 2^29` and `+ z_y` fits.
pub(crate) struct HiShift {
    m_acc: __m256i,
    m_acc_odd: __m256i,
    m_res: __m256i,
    m_res_odd: __m256i,
    rnd_even: __m256i,
    rnd_odd: __m256i,
    up_even: __m256i,
    up_odd: __m256i,
    sh32: __m256i,
    z_y: __m256i,
    qmin: __m256i,
    qmax: __m256i,
}

impl HiShift {
    /// # Safety
    /// AVX2 available.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn new(q: &QParams8, z_y: i32, qmin: i32, qmax: i32) -> HiShift {
        let one = _mm256_set1_epi64x(1);
        let sh_even = _mm256_and_si256(q.shift, _mm256_set1_epi64x(0xFFFF_FFFF));
        let sh_odd = _mm256_srli_epi64::<32>(q.shift);
        let zero = _mm256_setzero_si256();
        let up = _mm256_max_epi32(_mm256_sub_epi32(_mm256_set1_epi32(32), q.shift), zero);
        HiShift {
            m_acc: q.m_acc,
            m_acc_odd: _mm256_srli_epi64::<32>(q.m_acc),
            m_res: q.m_res,
            m_res_odd: _mm256_srli_epi64::<32>(q.m_res),
            rnd_even: _mm256_sllv_epi64(one, _mm256_sub_epi64(sh_even, one)),
            rnd_odd: _mm256_sllv_epi64(one, _mm256_sub_epi64(sh_odd, one)),
            up_even: _mm256_and_si256(up, _mm256_set1_epi64x(0xFFFF_FFFF)),
            up_odd: _mm256_srli_epi64::<32>(up),
            sh32: _mm256_max_epi32(_mm256_sub_epi32(q.shift, _mm256_set1_epi32(32)), zero),
            z_y: _mm256_set1_epi32(z_y),
            qmin: _mm256_set1_epi32(qmin),
            qmax: _mm256_set1_epi32(qmax),
        }
    }

    /// `requant(s, m_acc, rq, m_res, shift, z_y, qmin, qmax)` on 8 i32 lanes (`rq` ignored
    /// unless `RES`). Only valid when every shift is in [32, 62], or, with `UP`, when
    /// additionally [`crate::kernels::int8::requant_fits_lshift`] holds for the lanes' qparams
    /// and the reduction: lanes with `shift < 32` then shift the rounded i64 sum left by
    /// `32 - shift` first (no overflow, by that bound), so its high dword is `T >> shift`.
    ///
    /// # Safety
    /// AVX2 available.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn apply<const RES: bool, const UP: bool>(&self, s: __m256i, rq: __m256i) -> __m256i {
        let mut te = _mm256_mul_epi32(s, self.m_acc);
        let mut to = _mm256_mul_epi32(_mm256_srli_epi64::<32>(s), self.m_acc_odd);
        if RES {
            te = _mm256_add_epi64(te, _mm256_mul_epi32(rq, self.m_res));
            to = _mm256_add_epi64(to, _mm256_mul_epi32(_mm256_srli_epi64::<32>(rq), self.m_res_odd));
        }
        te = _mm256_add_epi64(te, self.rnd_even);
        to = _mm256_add_epi64(to, self.rnd_odd);
        if UP {
            te = _mm256_sllv_epi64(te, self.up_even);
            to = _mm256_sllv_epi64(to, self.up_odd);
        }
        let hi = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(te), to);
        let q = _mm256_add_epi32(_mm256_srav_epi32(hi, self.sh32), self.z_y);
        _mm256_min_epi32(_mm256_max_epi32(q, self.qmin), self.qmax)
    }
}

/// The four qparams columns of 8 channels, one i32 vector each.
pub(crate) struct QParams8 {
    pub(crate) bias: __m256i,
    pub(crate) m_acc: __m256i,
    pub(crate) m_res: __m256i,
    pub(crate) shift: __m256i,
}

/// Loads `n <= 8` qparams rows (`bias, m_acc, m_res, shift`) and transposes them into
/// columns; lanes `>= n` are zero (never stored).
///
/// # Safety
/// `qp` readable for `4*n` i32; AVX2 available.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn load_qparams(qp: *const i32, n: usize) -> QParams8 {
    // Lanes >= n: zero bias and multipliers, shift 62 (valid for both requant paths).
    let mut buf: [i32; 4 * NR] = core::array::from_fn(|i| if i % 4 == 3 { 62 } else { 0 });
    let src = if n == NR {
        qp
    } else {
        // SAFETY: qp readable for 4*n i32 (contract); buf holds 32.
        unsafe { core::ptr::copy_nonoverlapping(qp, buf.as_mut_ptr(), 4 * n) };
        buf.as_ptr()
    };
    // SAFETY: src readable for 32 i32 (full tile or the stack buffer).
    let (r01, r23, r45, r67) = unsafe {
        (
            _mm256_loadu_si256(src as *const __m256i),
            _mm256_loadu_si256(src.add(8) as *const __m256i),
            _mm256_loadu_si256(src.add(16) as *const __m256i),
            _mm256_loadu_si256(src.add(24) as *const __m256i),
        )
    };
    // r01 = [b0 a0 r0 s0 | b1 a1 r1 s1] ... ; after the two unpack levels each column is in
    // lane order [0 2 4 6 | 1 3 5 7], fixed by one vpermd.
    let t0 = _mm256_unpacklo_epi32(r01, r23); // [b0 b2 a0 a2 | b1 b3 a1 a3]
    let t1 = _mm256_unpackhi_epi32(r01, r23); // [r0 r2 s0 s2 | r1 r3 s1 s3]
    let t2 = _mm256_unpacklo_epi32(r45, r67);
    let t3 = _mm256_unpackhi_epi32(r45, r67);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let col = |v: __m256i| _mm256_permutevar8x32_epi32(v, order);
    QParams8 {
        bias: col(_mm256_unpacklo_epi64(t0, t2)),
        m_acc: col(_mm256_unpackhi_epi64(t0, t2)),
        m_res: col(_mm256_unpacklo_epi64(t1, t3)),
        shift: col(_mm256_unpackhi_epi64(t1, t3)),
    }
}

/// Loads `n <= 8` bytes into the low 8 bytes of an xmm (the rest zero).
///
/// # Safety
/// `p` readable for `n` bytes; AVX2 available.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn load8(p: *const i8, n: usize) -> __m128i {
    // SAFETY: a full row reads 8 bytes, a partial one goes through a stack buffer.
    unsafe {
        if n == 8 {
            _mm_loadl_epi64(p as *const __m128i)
        } else {
            let mut buf = [0i8; 16];
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
            _mm_loadu_si128(buf.as_ptr() as *const __m128i)
        }
    }
}

/// Stores the first `n <= 8` lanes of `v` (i32, already in [-128, 127]) as bytes.
///
/// # Safety
/// `p` writable for `n` bytes; AVX2 available.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn store8(p: *mut i8, n: usize, v: __m256i) {
    let w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let b = _mm_packs_epi16(w, w);
    // SAFETY: a full row writes 8 bytes, a partial one goes through a stack buffer.
    unsafe {
        if n == 8 {
            _mm_storel_epi64(p as *mut __m128i, b);
        } else {
            let mut buf = [0i8; 16];
            _mm_storeu_si128(buf.as_mut_ptr() as *mut __m128i, b);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
        }
    }
}

/// [`crate::kernels::int8::requant`] on 8 lanes: `s, m_acc, rq, m_res, shift` are i32 lanes,
/// `z_y, qmin, qmax` i64 lanes (broadcast). Returns the results as i32 lanes.
///
/// # Safety
/// AVX2 available. (No memory access; lanes with a shift outside [1, 62] give unspecified
/// values but no UB.)
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn requant8(
    s: __m256i,
    m_acc: __m256i,
    rq: __m256i,
    m_res: __m256i,
    shift: __m256i,
    z_y: __m256i,
    qmin: __m256i,
    qmax: __m256i,
) -> __m256i {
    let lo32 = _mm256_set1_epi64x(0xFFFF_FFFF);
    // SAFETY: AVX2 available (contract); register-only arithmetic.
    let (even, odd) = unsafe {
        (
            requant4(s, m_acc, rq, m_res, _mm256_and_si256(shift, lo32), z_y, qmin, qmax),
            requant4(
                _mm256_srli_epi64::<32>(s),
                _mm256_srli_epi64::<32>(m_acc),
                _mm256_srli_epi64::<32>(rq),
                _mm256_srli_epi64::<32>(m_res),
                _mm256_srli_epi64::<32>(shift),
                z_y,
                qmin,
                qmax,
            ),
        )
    };
    _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd))
}

/// The requantisation of the 4 even i32 lanes (the low halves of the i64 lanes; `shift` as
/// i64 lanes). The i64 results (in [qmin, qmax]) sit in the low halves.
///
/// # Safety
/// AVX2 available.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn requant4(
    s: __m256i,
    m_acc: __m256i,
    rq: __m256i,
    m_res: __m256i,
    shift: __m256i,
    z_y: __m256i,
    qmin: __m256i,
    qmax: __m256i,
) -> __m256i {
    let one = _mm256_set1_epi64x(1);
    let t = _mm256_add_epi64(_mm256_mul_epi32(s, m_acc), _mm256_mul_epi32(rq, m_res));
    let t = _mm256_add_epi64(t, _mm256_sllv_epi64(one, _mm256_sub_epi64(shift, one)));
    // Arithmetic shift: for t < 0, t >> sh == !((!t) >>> sh).
    let sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), t);
    let r = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(t, sign), shift), sign);
    let q = _mm256_add_epi64(r, z_y);
    let q = _mm256_blendv_epi8(q, qmin, _mm256_cmpgt_epi64(qmin, q));
    _mm256_blendv_epi8(q, qmax, _mm256_cmpgt_epi64(q, qmax))
}
