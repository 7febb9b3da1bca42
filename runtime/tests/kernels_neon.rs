//! aarch64 NEON kernels against their scalar twins, run under qemu-user as a Cortex-A72 (NEON,
//! no dot product) and a Cortex-A76 (dot product, fp16):
//! - fp32 / f16-weight 6x16 GEMM micro-kernel vs `gemm_6x16_generic` (tolerance relative to
//!   each output's mass `sum |a*b| + |c| + |bias| + |residual|`; the NEON kernel fuses the
//!   multiply-add, the twin does not), including NaN clamping and no writes outside the tile;
//! - int8 6x8 micro-kernels (`smlal` and `sdot`) vs `gemm_i8i32_6x8__generic`, byte-exact,
//!   over random shapes around the tile edges, full-range weights (-128 included), garbage in
//!   the A padding lanes, random and adversarial qparams (rounding ties of both signs, i32
//!   wrap of `acc + bias`, the extreme multipliers and shifts).
//!
//! The `sdot` kernel needs FEAT_DotProd: without it a skip is printed (and with `QEMU_CPU`
//! naming a CPU model whose features are known, the detection itself is checked, so the A76
//! run cannot silently skip it). On x86 this file is an empty test binary.
#![cfg(target_arch = "aarch64")]

use resq::kernels::aarch64::gemm_f16_6x16__neon::gemm_f16_6x16__neon;
use resq::kernels::aarch64::gemm_f32_6x16__neon::gemm_f32_6x16__neon;
use resq::kernels::aarch64::gemm_i8i32_6x8__neon::gemm_i8i32_6x8__neon;
use resq::kernels::aarch64::gemm_i8i32_6x8__neon_dot::gemm_i8i32_6x8__neon_dot;
use resq::kernels::gemm::{conv2d_packed, conv2d_packed_scratch_len, Act, ConvGeom, Epilogue, MicroTile, MR};
use resq::kernels::generic::gemm::{gemm_f16_6x16__generic, gemm_f32_6x16__generic};
use resq::kernels::int8::generic::gemm_i8i32_6x8__generic;
use resq::kernels::int8::pack::pack_i8_n16k4;
use resq::kernels::int8::{conv2d_i8, conv2d_i8_scratch_len, requant, MicroKernelI8, MicroTileI8, QEpilogue};
use resq::kernels::pack::pack_n16;
use resq::team::Team;
use resq::Isa;

const SENTINEL: f32 = -12345.5;
const SENTINEL_I8: i8 = 0x5A;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [lo, hi].
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn i8(&mut self) -> i8 {
        self.next() as i8
    }
}

/// True if this CPU has the dot-product extension. When `QEMU_CPU` names a model whose
/// features are known, the detection must agree (so the A76 run really tests `sdot` and the
/// A72 run really runs without it).
fn has_dotprod() -> bool {
    let dot = std::arch::is_aarch64_feature_detected!("dotprod");
    match std::env::var("QEMU_CPU").as_deref() {
        Ok("cortex-a76") | Ok("neoverse-n1") => {
            assert!(dot, "QEMU_CPU names a dotprod CPU but dotprod is not detected")
        }
        Ok("cortex-a72") | Ok("cortex-a53") | Ok("cortex-a57") => {
            assert!(!dot, "QEMU_CPU names a CPU without dotprod but dotprod is detected")
        }
        _ => {}
    }
    dot
}

// ---------------------------------------------------------------------------------------------
// fp32 / f16 GEMM micro-kernel
// ---------------------------------------------------------------------------------------------

/// Weight element of the f32 test: f32 or f16 panels.
trait W: Copy + Default {
    fn from_f32(v: f32) -> Self;
    fn val(self) -> f32;
}
impl W for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn val(self) -> f32 {
        self
    }
}
impl W for half::f16 {
    fn from_f32(v: f32) -> Self {
        half::f16::from_f32(v)
    }
    fn val(self) -> f32 {
        self.to_f32()
    }
}

struct F32Case<T> {
    m: usize,
    n: usize,
    k: usize,
    a: Vec<f32>, // MR rows of k (row i at i*k)
    b: Vec<T>,   // k x 16
    c0: Vec<f32>,
    ldc: usize,
    bias: Option<Vec<f32>>,
    res: Option<Vec<f32>>,
    ldr: usize,
    act: Act,
    load_c: bool,
    finish: bool,
}

impl<T: W> F32Case<T> {
    fn random(rng: &mut Rng, m: usize, n: usize, k: usize) -> Self {
        let ldc = n + rng.below(5);
        let ldr = n + rng.below(3);
        let mut c0 = vec![SENTINEL; MR * ldc + 8];
        for i in 0..m {
            for j in 0..n {
                c0[i * ldc + j] = rng.f();
            }
        }
        let bias = (rng.below(3) != 0).then(|| (0..n).map(|_| rng.f()).collect());
        let res = (rng.below(2) != 0).then(|| (0..MR * ldr).map(|_| rng.f()).collect());
        // Padding lanes of B (>= n) hold values too: the kernel must read but never store them.
        let b = (0..k * 16).map(|_| T::from_f32(rng.f())).collect();
        let act = match rng.below(4) {
            0 => Act::None,
            1 => Act::Relu,
            2 => Act::Clip(-0.5, 0.75),
            _ => Act::Clip(0.0, 6.0),
        };
        F32Case {
            m,
            n,
            k,
            a: (0..MR * k.max(1)).map(|_| rng.f()).collect(),
            b,
            c0,
            ldc,
            bias,
            res,
            ldr,
            act,
            load_c: rng.below(3) == 0,
            finish: rng.below(4) != 0,
        }
    }

    fn run(&self, kern: unsafe fn(&MicroTile<T>)) -> Vec<f32> {
        let mut c = self.c0.clone();
        let kk = self.k.max(1);
        let t = MicroTile::<T> {
            m: self.m,
            n: self.n,
            k: self.k,
            a: core::array::from_fn(|i| self.a[if i < self.m { i } else { 0 } * kk..].as_ptr()),
            b: self.b.as_ptr(),
            c: c.as_mut_ptr(),
            ldc: self.ldc,
            bias: self.bias.as_ref().map_or(core::ptr::null(), |b| b.as_ptr()),
            residual: self.res.as_ref().map_or(core::ptr::null(), |r| r.as_ptr()),
            ldr: self.ldr,
            act: self.act,
            load_c: self.load_c,
            finish: self.finish,
        };
        // SAFETY: a rows hold k floats, b 16*k elements, c MR rows at ldc >= n, bias n floats,
        // residual MR rows at ldr >= n.
        unsafe { kern(&t) };
        c
    }

    /// Mass of output (i, j): the scale of its rounding error.
    fn mass(&self, i: usize, j: usize) -> f64 {
        let kk = self.k.max(1);
        let mut s: f64 = (0..self.k).map(|p| (self.a[i * kk + p] as f64 * self.b[p * 16 + j].val() as f64).abs()).sum();
        if self.load_c {
            s += (self.c0[i * self.ldc + j] as f64).abs();
        }
        if self.finish {
            s += self.bias.as_ref().map_or(0.0, |b| (b[j] as f64).abs());
            s += self.res.as_ref().map_or(0.0, |r| (r[i * self.ldr + j] as f64).abs());
        }
        s
    }
}

/// Compares a SIMD and a generic f32 micro-kernel on random tiles around the edges
/// (m 1..=6, n 1..=16, k around 4-, 8- and 16-boundaries).
fn f32_kernel_matches<T: W>(simd: unsafe fn(&MicroTile<T>), generic: unsafe fn(&MicroTile<T>), what: &str) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut worst = 0.0f64;
    let mut cases = 0;
    for m in 1..=MR {
        for n in [1, 3, 4, 5, 8, 11, 15, 16] {
            for k in [1, 2, 3, 7, 16, 31, 64, 257] {
                let case = F32Case::<T>::random(&mut rng, m, n, k);
                let got = case.run(simd);
                let want = case.run(generic);
                for idx in 0..got.len() {
                    let (i, j) = (idx / case.ldc, idx % case.ldc);
                    if i >= m || j >= n {
                        assert_eq!(got[idx].to_bits(), SENTINEL.to_bits(), "{what}: wrote outside the tile at {idx}");
                        continue;
                    }
                    let err = (got[idx] as f64 - want[idx] as f64).abs() / case.mass(i, j).max(1e-30);
                    worst = worst.max(err);
                    assert!(
                        err <= 1e-5,
                        "{what}: m {m} n {n} k {k} at ({i},{j}): {} vs {} (rel {err:e})",
                        got[idx],
                        want[idx]
                    );
                }
                cases += 1;
            }
        }
    }
    eprintln!("{what}: {cases} tiles, worst relative error {worst:e}");
}

#[test]
fn f32_micro_kernel_matches_generic() {
    f32_kernel_matches::<f32>(gemm_f32_6x16__neon, gemm_f32_6x16__generic, "gemm_f32_6x16__neon");
}

#[test]
fn f16_micro_kernel_matches_generic() {
    f32_kernel_matches::<half::f16>(gemm_f16_6x16__neon, gemm_f16_6x16__generic, "gemm_f16_6x16__neon");
}

/// Exact cases: small integers make every product and sum exact, so FMA or not the results
/// are equal bit for bit; NaN sums clamp to `lo` like `f32::max`; infinities pass through
/// `Act::None`; f16 weights are widened exactly (subnormal and max halves).
#[test]
fn f32_micro_kernel_exact_cases() {
    let k = 5;
    let a: Vec<f32> = (0..MR * k).map(|v| (v % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..k * 16).map(|v| (v % 5) as f32 - 2.0).collect();
    let bias: Vec<f32> = (0..16).map(|v| v as f32 * 0.5).collect();
    for act in [Act::None, Act::Relu, Act::Clip(-3.0, 4.0)] {
        let mut outs = Vec::new();
        for kern in [gemm_f32_6x16__neon as unsafe fn(&MicroTile), gemm_f32_6x16__generic] {
            let mut c = vec![0.0f32; MR * 16];
            c[3] = f32::NAN;
            c[16 + 2] = f32::INFINITY;
            let t = MicroTile {
                m: MR,
                n: 16,
                k,
                a: core::array::from_fn(|i| a[i * k..].as_ptr()),
                b: b.as_ptr(),
                c: c.as_mut_ptr(),
                ldc: 16,
                bias: bias.as_ptr(),
                residual: core::ptr::null(),
                ldr: 0,
                act,
                load_c: true,
                finish: true,
            };
            // SAFETY: every pointer covers the tile (6 rows of k, 16*k weights, 6x16 C, 16 bias).
            unsafe { kern(&t) };
            outs.push(c);
        }
        let bits = |v: &Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&outs[0]), bits(&outs[1]), "act {act:?}");
        match act {
            Act::None => assert!(outs[0][3].is_nan() && outs[0][18] == f32::INFINITY),
            Act::Relu => assert_eq!((outs[0][3], outs[0][18]), (0.0, f32::INFINITY)),
            Act::Clip(lo, hi) => assert_eq!((outs[0][3], outs[0][18]), (lo, hi)),
        }
    }
    // f16 extremes: max normal, smallest subnormal, negative zero, mixed.
    let halves = [65504.0f32, -65504.0, 5.960_464_5e-8, -0.0, 1.0, -2.5, 0.333_251_95, 1024.0];
    let bh: Vec<half::f16> = (0..16).map(|l| half::f16::from_f32(halves[l % 8])).collect();
    let a1 = [1.0f32];
    let mut c = vec![0.0f32; 16];
    let t = MicroTile::<half::f16> {
        m: 1,
        n: 16,
        k: 1,
        a: [a1.as_ptr(); MR],
        b: bh.as_ptr(),
        c: c.as_mut_ptr(),
        ldc: 16,
        bias: core::ptr::null(),
        residual: core::ptr::null(),
        ldr: 0,
        act: Act::None,
        load_c: false,
        finish: true,
    };
    // SAFETY: one row of 1 float, 16 halves, one C row of 16.
    unsafe { gemm_f16_6x16__neon(&t) };
    for l in 0..16 {
        // 0 + 1*w: exact (and +0 for w = -0, as in the twin's `0.0 + a*w`).
        assert_eq!(c[l].to_bits(), (0.0f32 + bh[l].to_f32()).to_bits(), "lane {l}");
    }
}

// ---------------------------------------------------------------------------------------------
// int8 GEMM micro-kernels
// ---------------------------------------------------------------------------------------------

struct I8Case {
    m: usize,
    n: usize,
    k4: usize,
    a: Vec<i16>, // MR rows of 4*k4
    b: Vec<i8>,  // k4 groups of 64 bytes (a whole PackedN16K4 group; the kernel reads a half)
    half: usize,
    qp: Vec<i32>, // 4*n
    ldy: usize,
    res: Option<Vec<i8>>,
    ldr: usize,
    z_res: i32,
    z_y: i32,
    qmin: i32,
    qmax: i32,
}

/// Random qparams row: either "realistic" (the multiplier and shift of a plausible scale
/// ratio, so outputs spread over the int8 range) or adversarial (anything the loader accepts).
fn qparams_row(rng: &mut Rng, k: usize, residual: bool) -> [i32; 4] {
    match rng.below(4) {
        0 => {
            // Anything valid.
            let m_res = if residual { rng.range(0, i32::MAX as i64) as i32 } else { 0 };
            [rng.next() as i32, rng.range(0, i32::MAX as i64) as i32, m_res, rng.range(1, 62) as i32]
        }
        1 => {
            // Ties: m = 2^(shift-1) makes t/2^shift = (s + rq)/2, a tie for every odd sum.
            let shift = rng.range(1, 31) as u32;
            let m = 1i32 << (shift - 1);
            [rng.range(-1000, 1000) as i32, m, if residual { m } else { 0 }, shift as i32]
        }
        _ => {
            // Realistic: |acc| ~ 2^13 * sqrt(k) for random operands, so M_acc ~ 2^-(6 + log2(k)/2)
            // maps it onto the int8 range (m_acc in [2^30, 2^31), shift ~ 37 + log2(k)/2).
            let shift = (37 + (k.max(1) as f64).log2() as i64 / 2 + rng.range(-2, 2)) as i32;
            let m_acc = rng.range(1 << 30, i32::MAX as i64) as i32;
            let m_res = if residual { rng.range(0, i32::MAX as i64) as i32 } else { 0 };
            [rng.range(-40_000, 40_000) as i32, m_acc, m_res, shift]
        }
    }
}

impl I8Case {
    fn random(rng: &mut Rng, m: usize, n: usize, k: usize) -> Self {
        let k4 = k.div_ceil(4);
        let ka = 4 * k4;
        // A: int8 values widened; the padding lanes past k hold garbage (any i16 is allowed
        // there since the matching weights are 0).
        let a_kind = rng.below(3);
        let mut a = vec![0i16; MR * ka];
        for (idx, v) in a.iter_mut().enumerate() {
            *v = if idx % ka >= k {
                rng.next() as i16
            } else {
                match a_kind {
                    0 => rng.i8() as i16,
                    1 => [-128i16, 127][rng.below(2)],
                    _ => rng.range(-3, 3) as i16,
                }
            };
        }
        // Weights: full i8 range (-128 is outside the spec's [-127, 127] but a file may hold
        // it; every kernel must agree), zero padded past k for all 16 channels.
        let w_kind = rng.below(3);
        let mut b = vec![0i8; k4 * 64];
        for g in 0..k4 {
            for l in 0..16 {
                for j in 0..4 {
                    if 4 * g + j < k {
                        b[g * 64 + 4 * l + j] = match w_kind {
                            0 => rng.i8(),
                            1 => [-128i8, 127, -127][rng.below(3)],
                            _ => rng.range(-127, 127) as i8,
                        };
                    }
                }
            }
        }
        let residual = rng.below(2) == 0;
        let ldy = n + rng.below(4);
        let ldr = n + rng.below(3);
        let qp: Vec<i32> = (0..n).flat_map(|_| qparams_row(rng, k, residual)).collect();
        let z_y = rng.range(-128, 127) as i32;
        let (qmin, qmax) = match rng.below(3) {
            0 => (-128, 127),
            1 => (z_y.max(-128), 127),
            _ => {
                let (x, y) = (rng.range(-128, 127) as i32, rng.range(-128, 127) as i32);
                (x.min(y), x.max(y))
            }
        };
        I8Case {
            m,
            n,
            k4,
            a,
            b,
            half: rng.below(2),
            qp,
            ldy,
            res: residual.then(|| (0..MR * ldr).map(|_| rng.i8()).collect()),
            ldr,
            z_res: rng.range(-128, 127) as i32,
            z_y,
            qmin,
            qmax,
        }
    }

    fn run(&self, kern: MicroKernelI8) -> Vec<i8> {
        let mut y = vec![SENTINEL_I8; MR * self.ldy + 8];
        let ka = 4 * self.k4;
        let t = MicroTileI8 {
            m: self.m,
            n: self.n,
            k4: self.k4,
            a: core::array::from_fn(|i| self.a[if i < self.m { i } else { 0 } * ka..].as_ptr()),
            b: self.b[self.half * 32..].as_ptr(),
            qp: self.qp.as_ptr(),
            y: y.as_mut_ptr(),
            ldy: self.ldy,
            residual: self.res.as_ref().map_or(core::ptr::null(), |r| r.as_ptr()),
            ldr: self.ldr,
            z_res: self.z_res,
            z_y: self.z_y,
            qmin: self.qmin,
            qmax: self.qmax,
            // The NEON epilogues do not use it; as the conv driver sets it.
            lshift_ok: resq::kernels::int8::requant_fits_lshift(&self.qp[..4 * self.n], 4 * self.k4),
        };
        // SAFETY: A rows hold 4*k4 i16; b + half*32 has 32 readable bytes at every 64*kk; qp
        // holds 4*n valid rows (m >= 0, shift in [1, 62]); y and residual hold MR rows at
        // ldy/ldr >= n; the dot-product kernel is only passed when dotprod is present.
        unsafe { kern(&t) };
        y
    }
}

/// The int8 kernels to test on this CPU (the `sdot` one only with FEAT_DotProd).
fn i8_kernels() -> Vec<(&'static str, MicroKernelI8)> {
    let mut v: Vec<(&'static str, MicroKernelI8)> = vec![("gemm_i8i32_6x8__neon", gemm_i8i32_6x8__neon)];
    if has_dotprod() {
        v.push(("gemm_i8i32_6x8__neon_dot", gemm_i8i32_6x8__neon_dot));
    } else {
        eprintln!("SKIP: dotprod not available on this CPU; gemm_i8i32_6x8__neon_dot not tested");
    }
    v
}

/// Compares every kernel with the generic twin on `case`, byte for byte (bytes outside the
/// tile must keep the sentinel).
fn check_i8(case: &I8Case, kernels: &[(&'static str, MicroKernelI8)], label: &str) -> usize {
    let want = case.run(gemm_i8i32_6x8__generic);
    for (name, kern) in kernels {
        let got = case.run(*kern);
        for idx in 0..got.len() {
            let (i, j) = (idx / case.ldy, idx % case.ldy);
            if i >= case.m || j >= case.n {
                assert_eq!(got[idx], SENTINEL_I8, "{name} {label}: wrote outside the tile at {idx}");
            } else {
                assert_eq!(
                    got[idx],
                    want[idx],
                    "{name} {label}: m {} n {} k4 {} at ({i},{j}), qparams {:?}",
                    case.m,
                    case.n,
                    case.k4,
                    &case.qp[4 * j..4 * j + 4]
                );
            }
        }
    }
    want.iter().filter(|&&v| v != SENTINEL_I8).count()
}

#[test]
fn i8_micro_kernels_match_generic_on_tile_edges() {
    let kernels = i8_kernels();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut cases = 0;
    let mut distinct = std::collections::BTreeSet::new();
    for m in 1..=MR {
        for n in 1..=8 {
            // k around the 4-k groups and the sdot kernel's 16-k steps (k4 % 4 = 0..3).
            for k in [1, 3, 4, 5, 12, 16, 17, 27, 32, 36, 64, 75, 147, 576] {
                let case = I8Case::random(&mut rng, m, n, k);
                check_i8(&case, &kernels, "random");
                for v in case.run(gemm_i8i32_6x8__generic) {
                    distinct.insert(v);
                }
                cases += 1;
            }
        }
    }
    // The outputs must actually spread over the int8 range (not all saturated).
    assert!(distinct.len() > 200, "only {} distinct output bytes", distinct.len());
    eprintln!("int8: {cases} random tiles, {} kernels, {} distinct outputs", kernels.len(), distinct.len());
}

/// A tile with zero weights, so `s = bias` exactly: drives the epilogue with chosen sums.
fn epilogue_case(bias_rq: &[(i32, i32)], m_acc: i32, m_res: i32, shift: i32, z_y: i32, qmin: i32, qmax: i32) -> I8Case {
    let n = bias_rq.len();
    assert!(n <= 8);
    // z_res = 0 and the residual byte carries rq directly (rq in [-128, 127] here).
    let res: Vec<i8> = (0..MR * 8).map(|idx| bias_rq[(idx % 8) % n].1 as i8).collect();
    I8Case {
        m: MR,
        n,
        k4: 1,
        a: vec![1; MR * 4],
        b: vec![0; 64],
        half: 0,
        qp: bias_rq.iter().flat_map(|&(b, _)| [b, m_acc, m_res, shift]).collect(),
        ldy: 8,
        res: Some(res),
        ldr: 8,
        z_res: 0,
        z_y,
        qmin,
        qmax,
    }
}

/// The requantisation epilogue on chosen values: rounding ties of both signs (half toward
/// +infinity), the extreme multipliers and shifts, `acc + bias` wrapping in i32, and the clamp
/// of huge i64 values; checked against [`requant`] directly, not only against the twin.
#[test]
fn i8_requant_epilogue_is_exact_on_ties_and_extremes() {
    let kernels = i8_kernels();
    let mut checked = 0;
    // Ties: m_acc = m_res = 2^(shift-1): t / 2^shift = (s + rq) / 2.
    for shift in [1, 2, 5, 17, 31] {
        let m = 1i32 << (shift - 1);
        let pairs: Vec<(i32, i32)> = vec![(-3, 0), (-1, 0), (1, 0), (3, 0), (-5, 2), (-4, -1), (0, -1), (7, -128)];
        let case = epilogue_case(&pairs, m, m, shift, 0, -128, 127);
        check_i8(&case, &kernels, "ties");
        let want = case.run(gemm_i8i32_6x8__generic);
        // -3/2 = -1.5 -> -1, -1/2 -> 0, 1/2 -> 1, 3/2 -> 2, -3/2 -> -1, -5/2 -> -2, -1/2 -> 0, -121/2 -> -60.
        assert_eq!(&want[..8], &[-1, 0, 1, 2, -1, -2, 0, -60], "shift {shift}");
        checked += 1;
    }
    // Extremes, checked against requant() itself.
    let big = [(i32::MIN, -128), (i32::MAX, 127), (-1, -128), (0, 0), (i32::MIN + 1, 127), (1 << 30, -1)];
    for (m_acc, m_res, shift) in [
        (i32::MAX, i32::MAX, 62),
        (i32::MAX, i32::MAX, 1),
        (1, 0, 1),
        (1 << 30, 1 << 30, 31),
        (0, i32::MAX, 40),
        (i32::MAX, 0, 32),
        (12345, 678, 20),
    ] {
        for (z_y, qmin, qmax) in [(0, -128, 127), (-128, -128, 127), (127, -128, 127), (5, 5, 90), (-20, -7, -7)] {
            let case = epilogue_case(&big, m_acc, m_res, shift, z_y, qmin, qmax);
            check_i8(&case, &kernels, "extremes");
            for (name, kern) in &kernels {
                let got = case.run(*kern);
                for (l, &(s, rq)) in big.iter().enumerate() {
                    let want = requant(s, m_acc, rq, m_res, shift as u32, z_y, qmin, qmax);
                    assert_eq!(got[l], want, "{name}: s {s} rq {rq} m {m_acc}/{m_res} shift {shift}");
                }
            }
            checked += 1;
        }
    }
    // acc + bias wraps in i32: all-127 activations and weights give acc = 127*127*4*k4 > 0,
    // and bias = i32::MAX pushes s past i32::MAX.
    let k4 = 3;
    let mut case =
        epilogue_case(&[(i32::MAX, 0), (i32::MAX - 100_000, 0), (i32::MIN, 0), (0, 0)], 1 << 20, 0, 31, 0, -128, 127);
    case.k4 = k4;
    case.a = vec![127; MR * 4 * k4];
    case.b = vec![127; 64 * k4];
    case.res = None;
    check_i8(&case, &kernels, "wrap");
    let acc = 127 * 127 * 4 * k4 as i32;
    let got = case.run(kernels[0].1);
    for (l, bias) in [i32::MAX, i32::MAX - 100_000, i32::MIN, 0].into_iter().enumerate() {
        assert_eq!(got[l], requant(acc.wrapping_add(bias), 1 << 20, 0, 0, 31, 0, -128, 127), "wrap lane {l}");
    }
    eprintln!("int8 epilogue: {} cases", checked + 1);
}

/// Random epilogues at the tile level with sums of every magnitude: exhaustive over the
/// shifts, random multipliers, both signs, with and without residual.
#[test]
fn i8_requant_epilogue_random_shifts() {
    let kernels = i8_kernels();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for shift in 1..=62 {
        for _ in 0..4 {
            let pairs: Vec<(i32, i32)> = (0..8)
                .map(|_| {
                    let mag = rng.range(0, 31) as u32;
                    let s = (rng.next() as i32) >> (31 - mag.min(31));
                    (s, rng.range(-128, 127) as i32)
                })
                .collect();
            let m_acc = (rng.next() >> 33) as i32;
            let m_res = if rng.below(2) == 0 { 0 } else { (rng.next() >> 33) as i32 };
            let z_y = rng.range(-128, 127) as i32;
            let case = epilogue_case(&pairs, m_acc, m_res, shift, z_y, -128, 127);
            check_i8(&case, &kernels, "random shifts");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Whole convolutions through the drivers (`gemm::conv2d_packed`, `int8::conv2d_i8`): every
// aarch64 tier against the generic one. The drivers pick their micro-kernel with
// `micro_kernel(isa)`, so these compare the NEON kernels inside the real loop nest (A-row
// pointers, K blocking, load_c/finish, partial panels, groups) once they are wired there.
// ---------------------------------------------------------------------------------------------

/// The aarch64 tiers this CPU runs (always `Neon`; `NeonDot`/`NeonDotFp16` when supported).
fn arm_isas() -> Vec<Isa> {
    [Isa::Neon, Isa::NeonDot, Isa::NeonDotFp16].into_iter().filter(|i| i.is_supported()).collect()
}

#[allow(clippy::too_many_arguments)]
fn geom(n: usize, hw: usize, c: (usize, usize), k: usize, s: usize, pad: usize, dil: usize, groups: usize) -> ConvGeom {
    let out = (hw + 2 * pad - dil * (k - 1) - 1) / s + 1;
    ConvGeom {
        n,
        in_h: hw,
        in_w: hw,
        in_c: c.0,
        out_h: out,
        out_w: out,
        out_c: c.1,
        kh: k,
        kw: k,
        stride_h: s,
        stride_w: s,
        pad_top: pad,
        pad_left: pad,
        dil_h: dil,
        dil_w: dil,
        groups,
    }
}

/// Geometries around the tile edges: 1x1 direct, 3x3 padded, strided, grouped, K > KC = 256,
/// channel counts that leave partial 8- and 16-wide panels.
fn driver_geoms() -> Vec<ConvGeom> {
    vec![
        geom(1, 7, (16, 16), 1, 1, 0, 1, 1),
        geom(2, 5, (13, 37), 1, 1, 0, 1, 1),
        geom(1, 9, (8, 24), 3, 1, 1, 1, 1),
        geom(1, 11, (3, 20), 7, 2, 3, 1, 1),
        geom(1, 6, (40, 33), 3, 2, 1, 1, 1),
        geom(1, 8, (12, 18), 3, 1, 2, 2, 3),
        geom(1, 4, (96, 17), 3, 1, 1, 1, 1),
        geom(3, 1, (300, 10), 1, 1, 0, 1, 1),
    ]
}

#[test]
fn conv2d_packed_arm_tiers_match_generic() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for g in driver_geoms() {
        let i_g = g.in_c / g.groups;
        let x: Vec<f32> = (0..g.x_len()).map(|_| rng.f()).collect();
        let w_ohwi: Vec<f32> = (0..g.w_len()).map(|_| rng.f()).collect();
        let w = pack_n16(&w_ohwi, g.out_c, g.kh, g.kw, i_g, g.groups);
        let w16: Vec<half::f16> = w.iter().map(|&v| half::f16::from_f32(v)).collect();
        let bias: Vec<f32> = (0..g.out_c).map(|_| rng.f()).collect();
        let res: Vec<f32> = (0..g.y_len()).map(|_| rng.f()).collect();
        let ep = Epilogue { bias: Some(&bias), residual: Some(&res), act: Act::Relu };
        let mut scratch = vec![0.0f32; conv2d_packed_scratch_len(&g, 1)];
        // Mass of each output: sum |x*w| over taps, bounded by K (|x|, |w| < 1) plus bias/res.
        let k = (g.kh * g.kw * i_g) as f32;
        let run_f32 = |isa: Isa, scratch: &mut [f32]| {
            let mut y = vec![0.0f32; g.y_len()];
            conv2d_packed(isa, &g, &x, &w, &ep, &mut y, scratch, None::<&Team>);
            y
        };
        let run_f16 = |isa: Isa, scratch: &mut [f32]| {
            let mut y = vec![0.0f32; g.y_len()];
            conv2d_packed(isa, &g, &x, &w16, &ep, &mut y, scratch, None::<&Team>);
            y
        };
        let want = run_f32(Isa::Generic, &mut scratch);
        let want16 = run_f16(Isa::Generic, &mut scratch);
        assert!(want.iter().any(|&v| v > 0.0), "{g:?}: degenerate reference");
        for isa in arm_isas() {
            // f16 weights at NeonDotFp16 run the fp16-arithmetic kernel: f16 activations and
            // 16-k f16 partial sums, whose bound (kernels/aarch64/gemm_f16_6x16__neon_fp16.rs,
            // tested tightly in kernels_neon_fp16.rs) is under 0.9% of the output's mass.
            let tol16 = if isa == Isa::NeonDotFp16 { 1e-2 } else { 1e-5 };
            for (got, want, tol) in
                [(run_f32(isa, &mut scratch), &want, 1e-5), (run_f16(isa, &mut scratch), &want16, tol16)]
            {
                for (idx, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                    assert!((a - b).abs() <= tol * (k + 2.0), "{isa} {g:?} at {idx}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn conv2d_i8_arm_tiers_match_generic() {
    let mut rng = Rng(0x0F1E_2D3C_4B5A_6978);
    for g in driver_geoms() {
        let i_g = g.in_c / g.groups;
        let k = g.kh * g.kw * i_g;
        let x: Vec<i8> = (0..g.x_len()).map(|_| rng.i8()).collect();
        let w_ohwi: Vec<i8> = (0..g.w_len()).map(|_| rng.range(-127, 127) as i8).collect();
        let w = pack_i8_n16k4(&w_ohwi, g.out_c, g.kh, g.kw, i_g, g.groups);
        let qparams: Vec<i32> = (0..g.out_c).flat_map(|_| qparams_row(&mut rng, k, true)).collect();
        let res: Vec<i8> = (0..g.y_len()).map(|_| rng.i8()).collect();
        let ep = QEpilogue { qparams: &qparams, residual: Some(&res), z_res: -3, z_y: 7, qmin: -128, qmax: 127 };
        let z_x = rng.range(-128, 127) as i32;
        let mut scratch = vec![0.0f32; conv2d_i8_scratch_len(&g, 1)];
        let run = |isa: Isa, scratch: &mut [f32]| {
            let mut y = vec![SENTINEL_I8; g.y_len()];
            conv2d_i8(isa, &g, &x, z_x, &w, &ep, &mut y, scratch, None::<&Team>);
            y
        };
        let want = run(Isa::Generic, &mut scratch);
        let distinct: std::collections::BTreeSet<i8> = want.iter().copied().collect();
        assert!(distinct.len() > 8, "{g:?}: degenerate reference");
        for isa in arm_isas() {
            assert_eq!(run(isa, &mut scratch), want, "{isa} {g:?}");
        }
    }
}
