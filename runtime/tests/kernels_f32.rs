//! fp32 GEMM / convolution / Winograd kernels: SIMD vs generic twin, both vs a naive NHWC
//! convolution (f64), thread-count bit-identity, no writes outside the output.
//!
//! Tolerances are relative to the "mass" of each output, `sum |x*w| + |bias| + |residual|`
//! (the natural scale of float summation error). Measured maxima on the dev box (Zen 3):
//! packed GEMM ~2e-7 (generic and AVX2), Winograd F(4x4,3x3) ~1e-6; the asserted bounds are
//! 1e-5 (direct) and 1e-4 (Winograd).

use resq::kernels::gemm::{
    conv2d_packed, conv2d_packed_scratch_len, conv2d_winograd, conv2d_winograd_scratch_len, micro_kernel, Act,
    ConvGeom, Epilogue, MicroTile, MR,
};
use resq::kernels::generic::gemm::gemm_f32_6x16__generic;
use resq::kernels::pack::{pack_n16, pack_winograd_f43, packed_n16_len, winograd_f43_len};
use resq::team::Team;
use resq::Isa;

const SENTINEL: f32 = -12345.5;

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
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The ISAs to test: always generic, plus AVX2 when this CPU has it (a skip is printed
/// otherwise).
fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Generic];
    if Isa::Avx2Fma.is_supported() {
        v.push(Isa::Avx2Fma);
    } else {
        eprintln!("SKIP: AVX2+FMA not available on this CPU; only the generic kernels are tested");
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn geom(
    n: usize,
    hw: (usize, usize),
    c: (usize, usize),
    k: (usize, usize),
    s: usize,
    pads: [usize; 4],
    dil: usize,
    groups: usize,
) -> ConvGeom {
    let (in_h, in_w) = hw;
    let [pt, pl, pb, pr] = pads;
    let out_h = (in_h + pt + pb - dil * (k.0 - 1) - 1) / s + 1;
    let out_w = (in_w + pl + pr - dil * (k.1 - 1) - 1) / s + 1;
    ConvGeom {
        n,
        in_h,
        in_w,
        in_c: c.0,
        out_h,
        out_w,
        out_c: c.1,
        kh: k.0,
        kw: k.1,
        stride_h: s,
        stride_w: s,
        pad_top: pt,
        pad_left: pl,
        dil_h: dil,
        dil_w: dil,
        groups,
    }
}

/// Naive NHWC convolution in f64 with OHWI weights: (values, mass) per output element.
fn naive(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    res: Option<&[f32]>,
    act: Act,
) -> (Vec<f64>, Vec<f64>) {
    let i_g = g.in_c / g.groups;
    let o_g = g.out_c / g.groups;
    let len = g.n * g.out_h * g.out_w * g.out_c;
    let (mut val, mut mass) = (vec![0.0f64; len], vec![0.0f64; len]);
    for b in 0..g.n {
        for oh in 0..g.out_h {
            for ow in 0..g.out_w {
                for oc in 0..g.out_c {
                    let grp = oc / o_g;
                    let (mut s, mut m) = (0.0f64, 0.0f64);
                    for r in 0..g.kh {
                        for q in 0..g.kw {
                            let ih = (oh * g.stride_h + r * g.dil_h) as isize - g.pad_top as isize;
                            let iw = (ow * g.stride_w + q * g.dil_w) as isize - g.pad_left as isize;
                            if ih < 0 || iw < 0 || ih >= g.in_h as isize || iw >= g.in_w as isize {
                                continue;
                            }
                            for ci in 0..i_g {
                                let xv = x
                                    [((b * g.in_h + ih as usize) * g.in_w + iw as usize) * g.in_c + grp * i_g + ci]
                                    as f64;
                                let wv = w[((oc * g.kh + r) * g.kw + q) * i_g + ci] as f64;
                                s += xv * wv;
                                m += (xv * wv).abs();
                            }
                        }
                    }
                    let o = ((b * g.out_h + oh) * g.out_w + ow) * g.out_c + oc;
                    if let Some(bs) = bias {
                        s += bs[oc] as f64;
                        m += (bs[oc] as f64).abs();
                    }
                    if let Some(rs) = res {
                        s += rs[o] as f64;
                        m += (rs[o] as f64).abs();
                    }
                    s = match act {
                        Act::None => s,
                        Act::Relu => s.max(0.0),
                        Act::Clip(lo, hi) => s.max(lo as f64).min(hi as f64),
                    };
                    val[o] = s;
                    mass[o] = m;
                }
            }
        }
    }
    (val, mass)
}

/// Max of |got - want| / mass over the outputs; panics with context if above `tol`.
fn check(what: &str, got: &[f32], want: &(Vec<f64>, Vec<f64>), tol: f64) -> f64 {
    let mut worst = 0.0f64;
    for (i, (&gv, (&wv, &m))) in got.iter().zip(want.0.iter().zip(&want.1)).enumerate() {
        let err = (gv as f64 - wv).abs();
        let rel = err / m.max(1e-30);
        assert!(
            gv.is_finite() && (err <= 1e-30 || rel <= tol),
            "{what}: element {i}: got {gv}, want {wv} (mass {m}, rel err {rel:e})"
        );
        worst = worst.max(if err <= 1e-30 { 0.0 } else { rel });
    }
    worst
}

#[derive(Clone, Copy, Debug)]
enum Algo {
    Packed,
    Winograd,
}

struct Case {
    g: ConvGeom,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
    res: Option<Vec<f32>>,
    act: Act,
}

impl Case {
    fn new(rng: &mut Rng, g: ConvGeom, bias: bool, res: bool, act: Act) -> Case {
        let x = rng.vec(g.n * g.in_h * g.in_w * g.in_c);
        let w = rng.vec(g.out_c * g.kh * g.kw * (g.in_c / g.groups));
        let bias = bias.then(|| rng.vec(g.out_c));
        let res = res.then(|| rng.vec(g.n * g.out_h * g.out_w * g.out_c));
        Case { g, x, w, bias, res, act }
    }

    fn packed_w(&self, algo: Algo) -> Vec<f32> {
        let g = &self.g;
        match algo {
            Algo::Packed => pack_n16(&self.w, g.out_c, g.kh, g.kw, g.in_c / g.groups, g.groups),
            Algo::Winograd => pack_winograd_f43(&self.w, g.out_c, g.in_c),
        }
    }

    /// Runs the kernel; checks nothing past y's end was written.
    fn run(&self, isa: Isa, algo: Algo, pool: Option<&Team>) -> Vec<f32> {
        let g = &self.g;
        let threads = pool.map_or(1, |p| p.threads());
        let w = self.packed_w(algo);
        let y_len = g.n * g.out_h * g.out_w * g.out_c;
        let mut y = vec![SENTINEL; y_len + 64];
        let ep = Epilogue { bias: self.bias.as_deref(), residual: self.res.as_deref(), act: self.act };
        match algo {
            Algo::Packed => {
                let mut s = vec![0.0; conv2d_packed_scratch_len(g, threads)];
                conv2d_packed(isa, g, &self.x, &w, &ep, &mut y[..y_len], &mut s, pool);
            }
            Algo::Winograd => {
                let mut s = vec![0.0; conv2d_winograd_scratch_len(g, threads)];
                conv2d_winograd(isa, g, &self.x, &w, &ep, &mut y[..y_len], &mut s, pool);
            }
        }
        assert!(y[y_len..].iter().all(|&v| v == SENTINEL), "{algo:?} wrote past the output ({g:?})");
        y.truncate(y_len);
        y
    }

    fn reference(&self) -> (Vec<f64>, Vec<f64>) {
        naive(&self.g, &self.x, &self.w, self.bias.as_deref(), self.res.as_deref(), self.act)
    }
}

fn acts(i: usize) -> Act {
    [Act::None, Act::Relu, Act::Clip(-0.25, 0.5)][i % 3]
}

#[test]
fn micro_kernel_simd_matches_generic_on_tile_edges() {
    let isas = isas();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut ks: Vec<usize> = (1..=40).collect();
    ks.extend([63, 64, 65, 257]);
    let ldc = 21;
    for &isa in &isas {
        let kernel = micro_kernel(isa);
        for m in 1..=MR {
            for n in 1..=16 {
                for &k in &ks {
                    let flags = rng.below(4);
                    let (load_c, finish) = (flags & 1 != 0, flags & 2 != 0 || k % 3 == 0);
                    let a = rng.vec(MR * k);
                    let b = rng.vec(16 * k);
                    let bias = rng.vec(n);
                    let res = rng.vec(MR * ldc);
                    let c0 = rng.vec(MR * ldc);
                    let act = acts(k + n);
                    let use_bias = rng.below(2) == 0;
                    let use_res = rng.below(2) == 0;
                    let mut outs = Vec::new();
                    for kern in [kernel, gemm_f32_6x16__generic as unsafe fn(&MicroTile)] {
                        let mut c = c0.clone();
                        let t = MicroTile {
                            m,
                            n,
                            k,
                            a: core::array::from_fn(|i| a[if i < m { i } else { 0 } * k..].as_ptr()),
                            b: b.as_ptr(),
                            c: c.as_mut_ptr(),
                            ldc,
                            bias: if use_bias { bias.as_ptr() } else { core::ptr::null() },
                            residual: if use_res { res.as_ptr() } else { core::ptr::null() },
                            ldr: ldc,
                            act,
                            load_c,
                            finish,
                        };
                        // SAFETY: a rows have k floats, b 16*k, c/res m rows at stride ldc >= n,
                        // bias n floats.
                        unsafe { kern(&t) };
                        outs.push(c);
                    }
                    // Outside the m x n tile nothing changes.
                    for i in 0..MR * ldc {
                        let inside = i / ldc < m && i % ldc < n;
                        if !inside {
                            assert_eq!(outs[0][i], c0[i], "{isa}: m={m} n={n} k={k} wrote outside the tile at {i}");
                        }
                    }
                    // Against an f64 reference, with the mass tolerance.
                    for i in 0..m {
                        for j in 0..n {
                            let (mut s, mut mass) = (0.0f64, 0.0f64);
                            for kk in 0..k {
                                let p = a[i * k + kk] as f64 * b[kk * 16 + j] as f64;
                                s += p;
                                mass += p.abs();
                            }
                            if load_c {
                                s += c0[i * ldc + j] as f64;
                                mass += (c0[i * ldc + j] as f64).abs();
                            }
                            if finish {
                                if use_bias {
                                    s += bias[j] as f64;
                                    mass += (bias[j] as f64).abs();
                                }
                                if use_res {
                                    s += res[i * ldc + j] as f64;
                                    mass += (res[i * ldc + j] as f64).abs();
                                }
                                s = match act {
                                    Act::None => s,
                                    Act::Relu => s.max(0.0),
                                    Act::Clip(lo, hi) => s.max(lo as f64).min(hi as f64),
                                };
                            }
                            for out in &outs {
                                let got = out[i * ldc + j] as f64;
                                assert!(
                                    (got - s).abs() <= 1e-6 * mass + 1e-30,
                                    "{isa}: m={m} n={n} k={k} ({i},{j}): {got} vs {s}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// GEMM through conv2d_packed on a `[M,1,1,K]` input (the Linear path): m in 1..=3*MR,
/// n in 1..=48, k in 1..=40 plus odd ones, SIMD vs generic vs naive.
#[test]
fn gemm_shapes_around_tile_edges() {
    let isas = isas();
    let mut rng = Rng(12345);
    let mut worst = 0.0f64;
    let mut ks: Vec<usize> = (1..=40).collect();
    ks.extend([255, 256, 257, 600]);
    for m in 1..=3 * MR {
        for n in 1..=48 {
            let k = ks[rng.below(ks.len())];
            let g = geom(m, (1, 1), (k, n), (1, 1), 1, [0; 4], 1, 1);
            let c = Case::new(&mut rng, g, n % 2 == 0, m % 3 == 0, acts(m + n));
            let want = c.reference();
            let mut outs = Vec::new();
            for &isa in &isas {
                let y = c.run(isa, Algo::Packed, None);
                worst = worst.max(check(&format!("{isa} gemm m={m} n={n} k={k}"), &y, &want, 1e-5));
                outs.push(y);
            }
        }
    }
    eprintln!("gemm: worst relative error {worst:e}");
}

fn conv_cases(rng: &mut Rng) -> Vec<Case> {
    let mut cases = Vec::new();
    let chans = [1usize, 3, 4, 13, 16, 17, 33];
    let mut i = 0;
    for &ci in &chans {
        for &co in &chans {
            // Rotate through kernel/stride/pad/dilation variants so every channel pair runs a few.
            for v in 0..2 {
                i += 1;
                let hw = [(5, 7), (7, 5), (9, 9), (6, 11), (1, 3)][i % 5];
                let (k, s, pads, dil) = match (i + v) % 8 {
                    0 => ((3, 3), 1, [1, 1, 1, 1], 1),
                    1 => ((3, 3), 2, [1, 1, 1, 1], 1),
                    2 => ((1, 1), 1, [0, 0, 0, 0], 1),
                    3 => ((1, 1), 2, [0, 0, 0, 0], 1),
                    4 => ((3, 3), 1, [1, 0, 2, 1], 2),
                    5 => ((7, 7), 2, [3, 3, 3, 3], 1),
                    6 => ((2, 3), 1, [0, 1, 1, 0], 1),
                    _ => ((1, 1), 1, [1, 0, 0, 1], 1),
                };
                if hw.0 + pads[0] + pads[2] < dil * (k.0 - 1) + 1 || hw.1 + pads[1] + pads[3] < dil * (k.1 - 1) + 1 {
                    continue;
                }
                let g = geom(1 + i % 2, hw, (ci, co), k, s, pads, dil, 1);
                cases.push(Case::new(rng, g, i % 2 == 0, i % 3 == 0, acts(i)));
            }
        }
    }
    // Groups (incl. depthwise) and partial panels.
    for (ci, co, groups) in [(4, 4, 4), (6, 9, 3), (32, 48, 2), (34, 34, 2), (16, 32, 16)] {
        i += 1;
        let g = geom(2, (7, 6), (ci, co), (3, 3), 1 + i % 2, [1, 1, 1, 1], 1, groups);
        cases.push(Case::new(rng, g, true, i % 2 == 0, acts(i)));
        let g = geom(1, (5, 5), (ci, co), (1, 1), 1, [0; 4], 1, groups);
        cases.push(Case::new(rng, g, false, true, Act::Relu));
    }
    // Large K (K blocking), many rows (several row blocks).
    cases.push(Case::new(rng, geom(1, (9, 9), (64, 20), (3, 3), 1, [1; 4], 1, 1), true, true, Act::Relu));
    cases.push(Case::new(rng, geom(1, (3, 3), (600, 17), (1, 1), 1, [0; 4], 1, 1), true, false, Act::None));
    cases.push(Case::new(rng, geom(2, (20, 13), (8, 24), (1, 1), 1, [0; 4], 1, 1), true, true, Act::Relu));
    cases
}

#[test]
fn conv2d_packed_matches_naive() {
    let isas = isas();
    let mut rng = Rng(777);
    let cases = conv_cases(&mut rng);
    let mut worst = 0.0f64;
    for c in &cases {
        let want = c.reference();
        for &isa in &isas {
            let y = c.run(isa, Algo::Packed, None);
            worst = worst.max(check(&format!("{isa} packed {:?}", c.g), &y, &want, 1e-5));
        }
    }
    eprintln!("conv2d_packed: {} cases, worst relative error {worst:e}", cases.len());
}

fn winograd_cases(rng: &mut Rng) -> Vec<Case> {
    let mut cases = Vec::new();
    let chans = [1usize, 3, 4, 13, 16, 17, 33];
    let mut i = 0;
    for &ci in &chans {
        for &co in &chans {
            i += 1;
            let hw = [(5, 7), (8, 8), (9, 13), (3, 3), (11, 6), (1, 4)][i % 6];
            let pads = [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 2, 1], [2, 2, 0, 1]][i % 4];
            if hw.0 + pads[0] + pads[2] < 3 || hw.1 + pads[1] + pads[3] < 3 {
                continue;
            }
            let g = geom(1 + i % 2, hw, (ci, co), (3, 3), 1, pads, 1, 1);
            cases.push(Case::new(rng, g, i % 2 == 0, i % 3 != 0, acts(i)));
        }
    }
    // Several tile blocks and output-channel chunks.
    cases.push(Case::new(rng, geom(1, (30, 29), (8, 72), (3, 3), 1, [1; 4], 1, 1), true, true, Act::Relu));
    cases.push(Case::new(rng, geom(2, (14, 14), (64, 64), (3, 3), 1, [1; 4], 1, 1), true, true, Act::Relu));
    // Interior tiles (the AVX2 transform's unmasked path) next to border ones, with channel
    // tails of fewer than 8 lanes on both sides, and small-channel blocks of 12 tiles.
    cases.push(Case::new(rng, geom(1, (21, 18), (19, 21), (3, 3), 1, [1, 2, 0, 1], 1, 1), true, true, Act::Relu));
    cases.push(Case::new(rng, geom(1, (32, 32), (16, 16), (3, 3), 1, [1; 4], 1, 1), true, true, Act::Relu));
    cases
}

#[test]
fn conv2d_winograd_matches_naive() {
    let isas = isas();
    let mut rng = Rng(4242);
    let cases = winograd_cases(&mut rng);
    let mut worst = 0.0f64;
    for c in &cases {
        let want = c.reference();
        let mut outs = Vec::new();
        for &isa in &isas {
            let y = c.run(isa, Algo::Winograd, None);
            worst = worst.max(check(&format!("{isa} winograd {:?}", c.g), &y, &want, 1e-4));
            outs.push(y);
        }
    }
    eprintln!("conv2d_winograd: {} cases, worst relative error {worst:e}", cases.len());
}

#[test]
fn results_are_bit_identical_across_thread_counts() {
    let isas = isas();
    let mut rng = Rng(99);
    let pools: Vec<Team> = (1..=4).map(|t| Team::new(t).expect("thread team")).collect();
    let packed = [
        geom(1, (28, 28), (32, 48), (3, 3), 2, [1; 4], 1, 1),
        geom(2, (15, 15), (40, 40), (1, 1), 1, [0; 4], 1, 1),
        geom(1, (7, 7), (300, 70), (1, 1), 1, [0; 4], 1, 1),
        geom(3, (1, 1), (520, 100), (1, 1), 1, [0; 4], 1, 1),
        geom(1, (9, 9), (16, 16), (3, 3), 1, [1; 4], 1, 4),
    ];
    let wino = [
        geom(1, (28, 28), (16, 32), (3, 3), 1, [1; 4], 1, 1),
        geom(1, (7, 7), (64, 160), (3, 3), 1, [1; 4], 1, 1),
        geom(2, (13, 10), (24, 24), (3, 3), 1, [1, 0, 1, 2], 1, 1),
    ];
    let mut cases: Vec<(Case, Algo)> = Vec::new();
    for g in packed {
        cases.push((Case::new(&mut rng, g, true, true, Act::Relu), Algo::Packed));
    }
    for g in wino {
        cases.push((Case::new(&mut rng, g, true, true, Act::Relu), Algo::Winograd));
    }
    for (c, algo) in &cases {
        for &isa in &isas {
            let single = c.run(isa, *algo, None);
            for pool in &pools {
                let y = c.run(isa, *algo, Some(pool));
                assert!(
                    y.iter().zip(&single).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa} {algo:?} {:?}: {} threads differ from 1",
                    c.g,
                    pool.threads()
                );
            }
        }
    }
}

#[test]
fn pack_round_trips() {
    let mut rng = Rng(5);
    for (o, kh, kw, i_g, groups) in
        [(1, 1, 1, 1, 1), (17, 3, 3, 5, 1), (48, 1, 1, 7, 3), (33, 7, 7, 3, 1), (8, 3, 3, 1, 8)]
    {
        let w = rng.vec(o * kh * kw * i_g);
        let p = pack_n16(&w, o, kh, kw, i_g, groups);
        assert_eq!(p.len(), packed_n16_len(o, kh, kw, i_g, groups));
        let (o_g, k) = (o / groups, kh * kw * i_g);
        let panels = o_g.div_ceil(16);
        // Unpack and compare; every padding lane is zero.
        let mut back = vec![f32::NAN; w.len()];
        for g in 0..groups {
            for p_ in 0..panels {
                for kk in 0..k {
                    for l in 0..16 {
                        let v = p[((g * panels + p_) * k + kk) * 16 + l];
                        if p_ * 16 + l < o_g {
                            back[(g * o_g + p_ * 16 + l) * k + kk] = v;
                        } else {
                            assert_eq!(v, 0.0);
                        }
                    }
                }
            }
        }
        assert_eq!(back, w);
    }
    // Winograd: the panel structure (positions x panels x I x 16) with zero padding.
    let (o, i) = (20, 3);
    let w = rng.vec(o * 9 * i);
    let u = pack_winograd_f43(&w, o, i);
    assert_eq!(u.len(), winograd_f43_len(o, i));
    assert_eq!(u.len(), 36 * 2 * i * 16);
    for pos in 0..36 {
        for ci in 0..i {
            for l in 4..16 {
                assert_eq!(u[((pos * 2 + 1) * i + ci) * 16 + l], 0.0);
            }
        }
    }
    // Position (5,5) of G g Gᵀ is g[2][2] exactly (row/col 5 of G is [0, 0, 1]).
    for oc in 0..o {
        for ci in 0..i {
            assert_eq!(u[((35 * 2 + oc / 16) * i + ci) * 16 + oc % 16], w[((oc * 3 + 2) * 3 + 2) * i + ci]);
        }
    }
}

#[test]
fn wrong_lengths_do_not_touch_memory() {
    // Debug builds debug_assert (panic before touching y); release builds return early.
    let g = geom(1, (5, 5), (4, 4), (3, 3), 1, [1; 4], 1, 1);
    let x_ok = vec![1.0; 5 * 5 * 4];
    let w = pack_n16(&vec![1.0; 4 * 9 * 4], 4, 3, 3, 4, 1);
    let wu = pack_winograd_f43(&vec![1.0; 4 * 9 * 4], 4, 4);
    let ep = Epilogue { bias: None, residual: None, act: Act::None };
    let short_bias = [1.0f32; 3];
    let ep_short = Epilogue { bias: Some(&short_bias), residual: None, act: Act::None };
    for isa in isas() {
        for (x, w, ep, scratch_len) in [
            (&x_ok[..10], &w[..], &ep, 1000),
            (&x_ok[..], &w[..w.len() - 1], &ep, 1000),
            (&x_ok[..], &w[..], &ep_short, 1000),
            (&x_ok[..], &w[..], &ep, 1),
        ] {
            let mut y = vec![SENTINEL; 100];
            let mut s = vec![0.0; scratch_len];
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                conv2d_packed(isa, &g, x, w, ep, &mut y, &mut s, None::<&Team>)
            }));
            assert!(y.iter().all(|&v| v == SENTINEL), "{isa}: conv2d_packed wrote with bad lengths");
        }
        for (x, w, ep, scratch_len) in [
            (&x_ok[..10], &wu[..], &ep, 100_000),
            (&x_ok[..], &wu[..wu.len() - 1], &ep, 100_000),
            (&x_ok[..], &wu[..], &ep_short, 100_000),
            (&x_ok[..], &wu[..], &ep, 10),
        ] {
            let mut y = vec![SENTINEL; 100];
            let mut s = vec![0.0; scratch_len];
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                conv2d_winograd(isa, &g, x, w, ep, &mut y, &mut s, None::<&Team>)
            }));
            assert!(y.iter().all(|&v| v == SENTINEL), "{isa}: conv2d_winograd wrote with bad lengths");
        }
        // A geometry Winograd cannot run (stride 2) is refused, not computed wrongly.
        let g2 = geom(1, (5, 5), (4, 4), (3, 3), 2, [1; 4], 1, 1);
        assert_eq!(conv2d_winograd_scratch_len(&g2, 1), 0);
        let mut y = vec![SENTINEL; 100];
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conv2d_winograd(isa, &g2, &x_ok, &wu, &ep, &mut y, &mut [], None::<&Team>)
        }));
        assert!(y.iter().all(|&v| v == SENTINEL));
    }
}

/// Counts allocations made on threads that opted in: the test thread during the calls
/// (`CALLER`) and the test's own team workers (`POOL`), so other tests running concurrently
/// do not interfere.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Counting;
    pub static CALLER: AtomicUsize = AtomicUsize::new(0);
    pub static POOL: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        /// 0: not counted, 1: counted in CALLER, 2: counted in POOL.
        pub static TRACKED: Cell<u8> = const { Cell::new(0) };
    }
    fn count() {
        match TRACKED.try_with(|t| t.get()).unwrap_or(0) {
            1 => CALLER.fetch_add(1, Ordering::Relaxed),
            2 => POOL.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
    // SAFETY: forwards to System; only adds a counter.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

#[test]
fn kernels_do_not_allocate() {
    use std::sync::atomic::Ordering;
    let mut rng = Rng(31);
    let pool = Team::new(3).expect("thread team");
    // Mark the two workers as counted: three shares that wait for each other run on three
    // threads; the two that are not this one are the workers.
    let me = std::thread::current().id();
    let arrived = std::sync::atomic::AtomicUsize::new(0);
    pool.run(3, &|_| {
        if std::thread::current().id() != me {
            counting::TRACKED.with(|t| t.set(2));
        }
        arrived.fetch_add(1, Ordering::SeqCst);
        let t0 = std::time::Instant::now();
        while arrived.load(Ordering::SeqCst) < 3 && t0.elapsed().as_secs() < 20 {
            std::hint::spin_loop();
        }
    });
    assert_eq!(arrived.load(Ordering::SeqCst), 3);
    let cases = [
        (
            Case::new(&mut rng, geom(1, (12, 12), (16, 40), (3, 3), 2, [1; 4], 1, 1), true, true, Act::Relu),
            Algo::Packed,
        ),
        (
            Case::new(&mut rng, geom(1, (12, 12), (300, 40), (1, 1), 1, [0; 4], 1, 1), true, false, Act::None),
            Algo::Packed,
        ),
        (
            Case::new(&mut rng, geom(1, (12, 12), (16, 40), (3, 3), 1, [1; 4], 1, 1), true, true, Act::Relu),
            Algo::Winograd,
        ),
    ];
    for (c, algo) in &cases {
        let g = &c.g;
        let ep = Epilogue { bias: c.bias.as_deref(), residual: c.res.as_deref(), act: c.act };
        let w = c.packed_w(*algo);
        let mut y = vec![0.0; g.n * g.out_h * g.out_w * g.out_c];
        let len = match algo {
            Algo::Packed => conv2d_packed_scratch_len(g, 3),
            Algo::Winograd => conv2d_winograd_scratch_len(g, 3),
        };
        let mut s = vec![0.0; len];
        for isa in isas() {
            for pool in [None, Some(&pool)] {
                let mut call = || match algo {
                    Algo::Packed => conv2d_packed(isa, g, &c.x, &w, &ep, &mut y, &mut s, pool),
                    Algo::Winograd => conv2d_winograd(isa, g, &c.x, &w, &ep, &mut y, &mut s, pool),
                };
                call(); // warm-up
                counting::TRACKED.with(|t| t.set(1));
                let total = || counting::CALLER.load(Ordering::SeqCst) + counting::POOL.load(Ordering::SeqCst);
                let (caller0, total0) = (counting::CALLER.load(Ordering::SeqCst), total());
                const CALLS: usize = 50;
                for _ in 0..CALLS {
                    call();
                }
                counting::TRACKED.with(|t| t.set(0));
                if pool.is_none() {
                    // Single-threaded: nothing but this thread runs the kernel.
                    let allocs = counting::CALLER.load(Ordering::SeqCst) - caller0;
                    assert_eq!(allocs, 0, "{isa} {algo:?} {g:?} allocated");
                } else {
                    // The static team allocates nothing, on the caller or on its workers.
                    let allocs = total() - total0;
                    assert_eq!(allocs, 0, "{isa} {algo:?} {g:?}: {allocs} allocations in {CALLS} calls with a team");
                }
            }
        }
    }
}
