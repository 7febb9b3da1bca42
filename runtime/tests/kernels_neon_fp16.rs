//! The fp16-arithmetic GEMM micro-kernel (`aarch64/gemm_f16_6x16__neon_fp16.rs`,
//! `Isa::NeonDotFp16`) against the scalar f32 twin, under qemu-user as a Cortex-A76 (FEAT_FP16)
//! and a Cortex-A72 (none: the tests print a skip, and check the A72 does not pick the kernel).
//!
//! The kernel rounds activations to f16 and sums blocks of `KB` = 16 products in f16, so it is
//! not bit-identical to anything; every check is against the error bound of the kernel's
//! module documentation, per output, relative to its mass `sum |a*w| + |c| + |bias| +
//! |residual|` (`u = 2^-11`, `L = min(KB, k)`):
//!
//! `|got - exact| <= (L u (1+u)^L + [A not f16] u + (3k + k/KB + 8) 2^-24) * mass + k 2^-25`
//!
//! (the `3k 2^-24` term covers the f32 rounding of both the kernel's block sums and the
//! unfused f32 twin the result is compared with). Cases: every row count, partial panels,
//! k around the 8-lane groups and the 16-k blocks, load_c/finish/bias/residual/activations,
//! sentinels around the tile; the driver (`conv2d_packed`, 1x1 direct and im2col, groups,
//! K > KC, 1 and 3 threads bit-identical) against a naive f64 convolution; the f16-range
//! fallback (products beyond 65504, inf/NaN inputs: bit-identical to the widening kernel); a
//! ResNet-50-sized K = 4608 layer whose measured error is printed next to the widening path's;
//! and the Winograd f16 path, which keeps the widening kernel at this tier (bit-identical to
//! NeonDot).
#![cfg(target_arch = "aarch64")]

use half::f16;
use resq::kernels::aarch64::gemm_f16_6x16__neon::gemm_f16_6x16__neon;
use resq::kernels::aarch64::gemm_f16_6x16__neon_fp16::{gemm_f16_6x16__neon_fp16, KB};
use resq::kernels::gemm::{
    conv2d_packed, conv2d_packed_scratch_len, conv2d_winograd, conv2d_winograd_scratch_len, micro_kernel_for,
    packed_micro_kernel_for, Act, ConvGeom, Epilogue, MicroTile, MR,
};
use resq::kernels::generic::gemm::gemm_f32_6x16__generic;
use resq::kernels::pack::{pack_n16, pack_winograd_f43};
use resq::team::Team;
use resq::Isa;

const SENTINEL: f32 = -12345.5;
/// Unit roundoff of f16.
const U: f64 = 1.0 / 2048.0;
const EPS32: f64 = 1.0 / 16_777_216.0;

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
}

fn r16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// True if this CPU has FEAT_FP16 (and the dot product, i.e. the NeonDotFp16 tier). When
/// `QEMU_CPU` names a CPU model whose features are known the detection must agree, so the
/// A76 run cannot silently skip and the A72 run really runs without it.
fn has_fp16_tier() -> bool {
    let fp16 = std::arch::is_aarch64_feature_detected!("fp16");
    let dot = std::arch::is_aarch64_feature_detected!("dotprod");
    match std::env::var("QEMU_CPU").as_deref() {
        Ok("cortex-a76") | Ok("neoverse-n1") => {
            assert!(fp16 && dot, "QEMU_CPU names an fp16+dotprod CPU but fp16={fp16} dotprod={dot}");
            assert_eq!(Isa::best_supported(), Isa::NeonDotFp16);
        }
        Ok("cortex-a72") | Ok("cortex-a53") | Ok("cortex-a57") => {
            assert!(!fp16, "QEMU_CPU names a CPU without fp16 but fp16 is detected");
            assert!(Isa::best_supported() < Isa::NeonDotFp16);
        }
        _ => {}
    }
    assert_eq!(Isa::NeonDotFp16.is_supported(), fp16 && dot);
    fp16 && dot
}

fn skip(test: &str) -> bool {
    if has_fp16_tier() {
        return false;
    }
    eprintln!("SKIP {test}: this CPU has no FEAT_FP16 (+dotprod); the fp16 kernel cannot run");
    true
}

/// The bound of the module docs as a fraction of the mass, for `k` terms.
fn rel_bound(k: usize, a_rounded: bool) -> f64 {
    let l = KB.min(k) as f64;
    l * U * (1.0 + U).powf(l) + if a_rounded { 0.0 } else { U } + (3 * k + k / KB + 8) as f64 * EPS32
}

/// Absolute part of the bound (f16 subnormal roundings).
fn abs_bound(k: usize) -> f64 {
    k as f64 / 33_554_432.0 + 1e-30
}

// ---------------------------------------------------------------------------------------------
// The tier: detection, session report, and the kernel really in use where it should be.
// ---------------------------------------------------------------------------------------------

/// `1 + 2^-12` is a quarter ulp above 1 in f16: fp16 accumulation gives exactly 1, f32 not.
fn probe(kernel: unsafe fn(&MicroTile<f16>)) -> f32 {
    let a = [1.0f32, 1.0];
    let mut b = [f16::ZERO; 32];
    b[0] = f16::ONE;
    b[16] = f16::from_f32(1.0 / 4096.0);
    let mut c = [0.0f32; 16];
    let t = MicroTile {
        m: 1,
        n: 1,
        k: 2,
        a: [a.as_ptr(); MR],
        b: b.as_ptr(),
        c: c.as_mut_ptr(),
        ldc: 16,
        bias: core::ptr::null(),
        residual: core::ptr::null(),
        ldr: 16,
        act: Act::None,
        load_c: false,
        finish: true,
    };
    // SAFETY: a holds k = 2 floats, b 16*k halves, c one row of 16.
    unsafe { kernel(&t) };
    c[0]
}

#[test]
fn fp16_kernel_is_picked_exactly_where_the_cpu_has_fp16() {
    let fp16 = has_fp16_tier();
    let best = Isa::best_supported();
    assert_eq!(best.implemented(), best, "{best} should run its own kernels");
    let widened = 1.0 + 1.0 / 4096.0;
    // What the packed driver hands out for the detected tier and for each lower one; the
    // Winograd path's kernel (`micro_kernel_for`) widens on every tier.
    let detected = probe(packed_micro_kernel_for::<f16>(best));
    assert_eq!(detected, if fp16 { 1.0 } else { widened }, "{best}: f16-weight kernel");
    assert_eq!(probe(micro_kernel_for::<f16>(best)), widened, "{best}: the Winograd kernel must widen");
    for isa in [Isa::Neon, Isa::NeonDot] {
        if isa.is_supported() {
            assert_eq!(probe(packed_micro_kernel_for::<f16>(isa)), widened, "{isa} must widen f16 weights");
        }
    }
    // Through the driver: a 1x1 conv of 2 channels into 1 with the same values.
    let g = geom(1, 1, (2, 1), 1, 1, 0, 1);
    let w: Vec<f16> = pack_n16(&[1.0, 1.0 / 4096.0], 1, 1, 1, 2, 1).iter().map(|&v| f16::from_f32(v)).collect();
    let mut y = [0.0f32];
    let ep = Epilogue { bias: None, residual: None, act: Act::None };
    conv2d_packed(Isa::detect(), &g, &[1.0, 1.0], &w, &ep, &mut y, &mut [], None::<&Team>);
    if std::env::var("RESQ_MAX_ISA").is_err() {
        assert_eq!(y[0], if fp16 { 1.0 } else { widened }, "conv2d_packed at {}", Isa::detect());
    }
    if fp16 {
        eprintln!("fp16 arithmetic kernel in use at {best}");
    } else {
        eprintln!("SKIP: no FEAT_FP16 at {best}: f16 weights are widened (checked)");
    }
}

// ---------------------------------------------------------------------------------------------
// Micro-kernel vs the scalar f32 twin.
// ---------------------------------------------------------------------------------------------

struct Case {
    m: usize,
    n: usize,
    k: usize,
    a: Vec<f32>,  // MR rows of k
    b: Vec<f16>,  // k x 16
    bw: Vec<f32>, // b widened
    c0: Vec<f32>,
    ldc: usize,
    bias: Option<Vec<f32>>,
    res: Option<Vec<f32>>,
    ldr: usize,
    act: Act,
    load_c: bool,
    finish: bool,
}

impl Case {
    /// Random tile; activations f16-rounded when `a_rounded`, with a sprinkling of large
    /// (|x| ~ 64) and tiny (f16-subnormal) values.
    fn random(rng: &mut Rng, m: usize, n: usize, k: usize, a_rounded: bool) -> Case {
        let ldc = n + rng.below(5);
        let ldr = n + rng.below(3);
        let mut c0 = vec![SENTINEL; MR * ldc + 8];
        for i in 0..m {
            for j in 0..n {
                c0[i * ldc + j] = rng.f();
            }
        }
        let a: Vec<f32> = (0..MR * k)
            .map(|_| {
                let v = match rng.below(16) {
                    0 => rng.f() * 64.0,
                    1 => rng.f() * 1e-5,
                    _ => rng.f(),
                };
                if a_rounded {
                    r16(v)
                } else {
                    v
                }
            })
            .collect();
        let b: Vec<f16> = (0..16 * k).map(|_| f16::from_f32(rng.f())).collect();
        let bw = b.iter().map(|h| h.to_f32()).collect();
        Case {
            m,
            n,
            k,
            a,
            b,
            bw,
            c0,
            ldc,
            bias: (rng.below(3) != 0).then(|| (0..n).map(|_| rng.f()).collect()),
            res: (rng.below(2) != 0).then(|| (0..MR * ldr).map(|_| rng.f()).collect()),
            ldr,
            act: [Act::None, Act::Relu, Act::Clip(-0.5, 0.75), Act::Clip(0.0, 6.0)][rng.below(4)],
            load_c: rng.below(3) == 0,
            finish: rng.below(4) != 0,
        }
    }

    fn tile<W>(&self, b: *const W, c: &mut [f32]) -> MicroTile<W> {
        MicroTile {
            m: self.m,
            n: self.n,
            k: self.k,
            a: core::array::from_fn(|i| self.a[if i < self.m { i } else { 0 } * self.k..].as_ptr()),
            b,
            c: c.as_mut_ptr(),
            ldc: self.ldc,
            bias: self.bias.as_ref().map_or(core::ptr::null(), |b| b.as_ptr()),
            residual: self.res.as_ref().map_or(core::ptr::null(), |r| r.as_ptr()),
            ldr: self.ldr,
            act: self.act,
            load_c: self.load_c,
            finish: self.finish,
        }
    }

    fn run16(&self, kern: unsafe fn(&MicroTile<f16>)) -> Vec<f32> {
        let mut c = self.c0.clone();
        let t = self.tile(self.b.as_ptr(), &mut c);
        // SAFETY: a rows hold k floats, b 16*k halves, c MR rows at ldc >= n, bias n floats,
        // residual MR rows at ldr >= n.
        unsafe { kern(&t) };
        c
    }

    /// The scalar f32 twin on the widened weights.
    fn run_twin(&self) -> Vec<f32> {
        let mut c = self.c0.clone();
        let t = self.tile(self.bw.as_ptr(), &mut c);
        // SAFETY: as in run16, with 16*k f32 weights.
        unsafe { gemm_f32_6x16__generic(&t) };
        c
    }

    fn mass(&self, i: usize, j: usize) -> f64 {
        let mut s: f64 = (0..self.k).map(|p| (self.a[i * self.k + p] as f64 * self.bw[p * 16 + j] as f64).abs()).sum();
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

/// Checks `got` against the twin's `want` within the bound; returns the worst `err / tol` (how
/// much of the bound was used) and the worst `err / mass` over outputs whose mass is >= 1e-3
/// (below that the absolute subnormal term dominates the bound).
fn check_case(c: &Case, got: &[f32], want: &[f32], a_rounded: bool, what: &str) -> (f64, f64) {
    let (mut used, mut worst) = (0.0f64, 0.0f64);
    for idx in 0..got.len() {
        let (i, j) = (idx / c.ldc, idx % c.ldc);
        if i >= c.m || j >= c.n {
            assert_eq!(got[idx].to_bits(), SENTINEL.to_bits(), "{what}: wrote outside the tile at {idx}");
            continue;
        }
        let mass = c.mass(i, j);
        let err = (got[idx] as f64 - want[idx] as f64).abs();
        // A clamp can only shrink the error, so the unclamped bound holds.
        let tol = rel_bound(c.k, a_rounded) * mass + abs_bound(c.k);
        assert!(
            err <= tol,
            "{what}: m {} n {} k {} at ({i},{j}): {} vs {} (err {err:e}, mass {mass:e}, tol {tol:e})",
            c.m,
            c.n,
            c.k,
            got[idx],
            want[idx]
        );
        used = used.max(err / tol);
        if mass >= 1e-3 {
            worst = worst.max(err / mass);
        }
    }
    (used, worst)
}

#[test]
fn fp16_micro_kernel_matches_f32_twin_on_tile_edges() {
    if skip("fp16_micro_kernel_matches_f32_twin_on_tile_edges") {
        return;
    }
    let mut rng = Rng(0x0F16_F16F_16F1_6F16);
    let (mut used, mut worst, mut cases) = ([0.0f64; 2], [0.0f64; 2], 0);
    for m in 1..=MR {
        for n in [1, 3, 8, 9, 15, 16] {
            for k in [1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 33, 64, 100, 256] {
                for (r, a_rounded) in [true, false].into_iter().enumerate() {
                    let case = Case::random(&mut rng, m, n, k, a_rounded);
                    let got = case.run16(gemm_f16_6x16__neon_fp16);
                    let want = case.run_twin();
                    let (u, w) = check_case(&case, &got, &want, a_rounded, "fp16 kernel");
                    used[r] = used[r].max(u);
                    worst[r] = worst[r].max(w);
                    cases += 1;
                }
            }
        }
    }
    eprintln!(
        "fp16 micro-kernel: {cases} tiles, worst err/mass {:.3e} (f16 A), {:.3e} (f32 A) against a bound of \
         {:.3e} / {:.3e} at k >= 16; at most {:.0}% / {:.0}% of the bound used",
        worst[0],
        worst[1],
        rel_bound(16, true),
        rel_bound(16, false),
        100.0 * used[0],
        100.0 * used[1]
    );
    // The bound is not vacuous: f16 rounding really shows (the kernel is not the f32 one).
    assert!(worst[1] > 1e-5, "fp16 kernel looks like f32 arithmetic ({:e})", worst[1]);
}

/// All-positive terms make the running f16 sum grow linearly, the worst case of the block
/// accumulation: still within the bound (which does not grow with k: each 16-k block restarts
/// from zero), and the f16 rounding is clearly visible.
#[test]
fn fp16_micro_kernel_positive_sums_stay_within_the_block_bound() {
    if skip("fp16_micro_kernel_positive_sums_stay_within_the_block_bound") {
        return;
    }
    let mut rng = Rng(0xABCD_EF01_2345_6789);
    for k in [16, 48, 256] {
        let mut case = Case::random(&mut rng, 6, 16, k, true);
        (case.act, case.finish) = (Act::None, true);
        for v in case.a.iter_mut() {
            *v = r16(0.5 + 0.5 * rng.f().abs());
        }
        for (h, w) in case.b.iter_mut().zip(case.bw.iter_mut()) {
            *h = f16::from_f32(0.5 + 0.5 * rng.f().abs());
            *w = h.to_f32();
        }
        let got = case.run16(gemm_f16_6x16__neon_fp16);
        let want = case.run_twin();
        let (_, worst) = check_case(&case, &got, &want, true, "positive sums");
        eprintln!("positive sums k={k}: worst err/mass {worst:.3e} (bound {:.3e})", rel_bound(k, true));
        // Each 16-k block sum rounds ~16 times at up to 16x the term size: clearly visible.
        assert!(worst > 1e-4, "k={k}: no f16 rounding visible ({worst:e})");
    }
}

#[test]
fn fp16_micro_kernel_falls_back_to_widening_outside_the_f16_range() {
    if skip("fp16_micro_kernel_falls_back_to_widening_outside_the_f16_range") {
        return;
    }
    let mut rng = Rng(0x5151_7272_9393_B4B4);
    // 300 * 300 = 90000 > 65504 (f16 max); 70000 is not an f16 at all; inf and NaN inputs.
    for (what, val) in
        [("product overflow", 300.0f32), ("a beyond f16", 70000.0), ("inf", f32::INFINITY), ("NaN", f32::NAN)]
    {
        for m in [1, 4, 6] {
            for k in [5, 16, 40] {
                let mut case = Case::random(&mut rng, m, 16, k, false);
                let pos = rng.below(k);
                case.a[(m - 1) * k + pos] = val;
                if what == "product overflow" {
                    for j in 0..16 {
                        case.b[pos * 16 + j] = f16::from_f32(300.0);
                        case.bw[pos * 16 + j] = 300.0;
                    }
                }
                let got = case.run16(gemm_f16_6x16__neon_fp16);
                let widening = case.run16(gemm_f16_6x16__neon);
                let same = got.iter().zip(&widening).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{what} m {m} k {k}: not the widening kernel's result\n{got:?}\n{widening:?}");
            }
        }
    }
    // Just inside the range: no fallback needed, still within the bound.
    let mut case = Case::random(&mut rng, 6, 16, 32, true);
    for v in case.a.iter_mut() {
        *v = r16(200.0 + 50.0 * rng.f());
    }
    let got = case.run16(gemm_f16_6x16__neon_fp16);
    check_case(&case, &got, &case.run_twin(), true, "large in-range values");
}

// ---------------------------------------------------------------------------------------------
// Through the driver.
// ---------------------------------------------------------------------------------------------

fn geom(n: usize, hw: usize, c: (usize, usize), k: usize, s: usize, pad: usize, groups: usize) -> ConvGeom {
    let out = (hw + 2 * pad - k) / s + 1;
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
        dil_h: 1,
        dil_w: 1,
        groups,
    }
}

/// Naive f64 convolution of NHWC `x` with OHWI `w` (+ bias + residual, ReLU): `(value, mass)`.
fn naive(g: &ConvGeom, x: &[f32], w: &[f32], bias: &[f32], res: &[f32]) -> Vec<(f64, f64)> {
    let i_g = g.in_c / g.groups;
    let o_g = g.out_c / g.groups;
    let mut out = Vec::with_capacity(g.y_len());
    for b in 0..g.n {
        for oh in 0..g.out_h {
            for ow in 0..g.out_w {
                for o in 0..g.out_c {
                    let grp = o / o_g;
                    let idx = out.len();
                    let (mut s, mut mass) = (bias[o] as f64 + res[idx] as f64, (bias[o].abs() + res[idx].abs()) as f64);
                    for r in 0..g.kh {
                        for q in 0..g.kw {
                            let ih = (oh * g.stride_h + r).wrapping_sub(g.pad_top);
                            let iw = (ow * g.stride_w + q).wrapping_sub(g.pad_left);
                            if ih >= g.in_h || iw >= g.in_w {
                                continue;
                            }
                            for c in 0..i_g {
                                let xv = x[((b * g.in_h + ih) * g.in_w + iw) * g.in_c + grp * i_g + c] as f64;
                                let wv = w[((o * g.kh + r) * g.kw + q) * i_g + c] as f64;
                                s += xv * wv;
                                mass += (xv * wv).abs();
                            }
                        }
                    }
                    out.push((s.max(0.0), mass));
                }
            }
        }
    }
    out
}

struct ConvCase {
    g: ConvGeom,
    x: Vec<f32>,
    w: Vec<f32>, // OHWI, f16-valued
    w16: Vec<f16>,
    bias: Vec<f32>,
    res: Vec<f32>,
}

impl ConvCase {
    /// Post-ReLU-like activations (>= 0, not f16-rounded) and He-scaled weights.
    fn new(rng: &mut Rng, g: ConvGeom) -> ConvCase {
        let i_g = g.in_c / g.groups;
        let k = g.kh * g.kw * i_g;
        let scale = (2.0 / k as f32).sqrt() * 1.7;
        let x = (0..g.x_len()).map(|_| rng.f().max(0.0) * 2.0).collect();
        let w: Vec<f32> = (0..g.w_len()).map(|_| r16(rng.f() * scale)).collect();
        let w16 = pack_n16(&w, g.out_c, g.kh, g.kw, i_g, g.groups).iter().map(|&v| f16::from_f32(v)).collect();
        let bias = (0..g.out_c).map(|_| rng.f() * 0.1).collect();
        let res = (0..g.y_len()).map(|_| rng.f() * 0.5).collect();
        ConvCase { g, x, w, w16, bias, res }
    }

    fn run(&self, isa: Isa, pool: Option<&Team>) -> Vec<f32> {
        let threads = pool.map_or(1, |p| p.threads());
        let mut y = vec![0.0f32; self.g.y_len()];
        let mut s = vec![0.0f32; conv2d_packed_scratch_len(&self.g, threads)];
        let ep = Epilogue { bias: Some(&self.bias), residual: Some(&self.res), act: Act::Relu };
        conv2d_packed(isa, &self.g, &self.x, &self.w16, &ep, &mut y, &mut s, pool);
        y
    }

    /// Worst err/mass and relative RMS error of `y` against the naive f64 convolution,
    /// asserting the bound per output.
    fn check(&self, y: &[f32], want: &[(f64, f64)], what: &str) -> (f64, f64) {
        let k = self.g.kh * self.g.kw * self.g.in_c / self.g.groups;
        let (mut worst, mut e2, mut y2) = (0.0f64, 0.0f64, 0.0f64);
        for (idx, (&got, &(v, mass))) in y.iter().zip(want).enumerate() {
            let err = (got as f64 - v).abs();
            let tol = rel_bound(k, false) * mass + abs_bound(k);
            assert!(err <= tol, "{what} {:?} at {idx}: {got} vs {v} (err {err:e}, tol {tol:e})", self.g);
            worst = worst.max(err / mass.max(1e-30));
            e2 += err * err;
            y2 += v * v;
        }
        (worst, (e2 / y2.max(1e-300)).sqrt())
    }
}

#[test]
fn conv2d_packed_fp16_matches_naive_within_the_bound() {
    if skip("conv2d_packed_fp16_matches_naive_within_the_bound") {
        return;
    }
    let mut rng = Rng(0x2468_ACE0_1357_9BDF);
    let team = Team::new(3).expect("team");
    let geoms = [
        geom(1, 7, (16, 16), 1, 1, 0, 1),  // 1x1 direct, K = 16 (one block)
        geom(2, 5, (13, 37), 1, 1, 0, 1),  // partial panels, K = 13
        geom(1, 9, (8, 24), 3, 1, 1, 1),   // 3x3 im2col, K = 72
        geom(1, 11, (3, 20), 7, 2, 3, 1),  // stem-like, K = 147
        geom(1, 6, (40, 33), 3, 2, 1, 1),  // strided, K = 360 > KC
        geom(1, 8, (12, 18), 3, 1, 1, 3),  // grouped
        geom(3, 1, (300, 10), 1, 1, 0, 1), // Linear-like, M = 3, K = 300
    ];
    for g in geoms {
        let c = ConvCase::new(&mut rng, g);
        let want = naive(&g, &c.x, &c.w, &c.bias, &c.res);
        let one = c.run(Isa::NeonDotFp16, None);
        let (worst, rms) = c.check(&one, &want, "fp16");
        let three = c.run(Isa::NeonDotFp16, Some(&team));
        assert!(one.iter().zip(&three).all(|(a, b)| a.to_bits() == b.to_bits()), "{g:?}: 3 threads differ from 1");
        eprintln!("conv {g:?}: worst err/mass {worst:.2e}, rel RMS {rms:.2e}");
    }
}

/// A ResNet-50 stage-4 3x3 conv's K = 3*3*512 = 4608 (49 pixels, 32 of the 512 output channels
/// to keep qemu fast): the fp16 kernel within the bound, its measured error printed next to
/// the widening (NeonDot) path's (f32 arithmetic, ~2e-7), and its relative RMS error (measured
/// 4.9e-4: f16 rounding of the activations plus the 16-k f16 block sums) below 1.5e-3.
#[test]
fn resnet50_sized_k_error_is_measured_and_bounded() {
    if skip("resnet50_sized_k_error_is_measured_and_bounded") {
        return;
    }
    let mut rng = Rng(0x5EED_4608_0000_0001);
    let g = geom(1, 7, (512, 32), 3, 1, 1, 1);
    let c = ConvCase::new(&mut rng, g);
    let want = naive(&g, &c.x, &c.w, &c.bias, &c.res);
    let (worst16, rms16) = c.check(&c.run(Isa::NeonDotFp16, None), &want, "fp16 K=4608");
    let (worst32, rms32) = c.check(&c.run(Isa::NeonDot, None), &want, "widening K=4608");
    eprintln!(
        "K = 4608: fp16 kernel worst err/mass {worst16:.2e}, rel RMS {rms16:.2e}; widening kernel {worst32:.2e}, \
         {rms32:.2e}; bound {:.2e} of the mass",
        rel_bound(4608, false)
    );
    // The widening path is f32 arithmetic: errors ~1e-7.
    assert!(rms32 < 1e-5, "widening path rel RMS {rms32:e}");
    assert!(rms16 < 1.5e-3, "fp16 kernel rel RMS {rms16:e}");
    // And clearly not f32 arithmetic.
    assert!(rms16 > 1e-5, "fp16 kernel rel RMS {rms16:e}");
}

/// The Winograd F(4,3) f16 path keeps the widening kernel at NeonDotFp16 (its output
/// transform amplifies the f16 rounding of the transformed activations: with the fp16 kernel
/// this case measured rel L2 6.1e-3 against 1.8e-3 widened, and ResNet-20 left its 5e-3
/// budget), so it is bit-identical to the NeonDot run and as accurate as before.
#[test]
fn winograd_f16_keeps_the_widening_kernel() {
    if skip("winograd_f16_keeps_the_widening_kernel") {
        return;
    }
    let mut rng = Rng(0x3333_5555_7777_9999);
    for g in [geom(1, 12, (16, 32), 3, 1, 1, 1), geom(1, 7, (64, 20), 3, 1, 1, 1)] {
        let c = ConvCase::new(&mut rng, g);
        let want = naive(&g, &c.x, &c.w, &c.bias, &c.res);
        let u16s: Vec<f16> = pack_winograd_f43(&c.w, g.out_c, g.in_c).iter().map(|&v| f16::from_f32(v)).collect();
        let ep = Epilogue { bias: Some(&c.bias), residual: Some(&c.res), act: Act::Relu };
        let run = |isa: Isa| {
            let mut y = vec![0.0f32; g.y_len()];
            let mut s = vec![0.0f32; conv2d_winograd_scratch_len(&g, 1)];
            conv2d_winograd(isa, &g, &c.x, &u16s, &ep, &mut y, &mut s, None::<&Team>);
            y
        };
        let (fp16, widened) = (run(Isa::NeonDotFp16), run(Isa::NeonDot));
        assert!(
            fp16.iter().zip(&widened).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{g:?}: Winograd at NeonDotFp16 differs from the widening path"
        );
        let (mut e2, mut y2) = (0.0f64, 0.0f64);
        for (&a, &(v, _)) in fp16.iter().zip(&want) {
            e2 += (a as f64 - v).powi(2);
            y2 += v * v;
        }
        let rel = (e2 / y2).sqrt();
        eprintln!("winograd {g:?}: rel L2 {rel:.2e} (U rounded to f16)");
        assert!(rel < 4e-3, "{g:?}: Winograd f16 rel L2 {rel:e}");
    }
}
