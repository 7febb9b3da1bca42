//! fp16 weights (format 1.2 `DType::F16`): every f16 kernel against the f32 kernel of the same
//! tier run on the f16-rounded weights widened to f32, over shapes around the tile edges, on
//! every tier (generic always, AVX2+FMA+F16C when the CPU has it) and with 1..=4 threads.
//!
//! The f16 kernels widen each weight exactly and then do the f32 kernel's arithmetic in the
//! f32 kernel's order, so the two must agree **bit for bit** (asserted), which implies the f32
//! tolerances. The f32 kernels themselves are checked against naive f64 convolutions in
//! `kernels_f32.rs`; here the rounded-weight f32 results are also checked against a naive f64
//! convolution of the rounded weights (relative to the mass `sum |x*w|`, as there).
//! Finally a hand-built `.resq` file with F16 weights in every layout (Ohwi, PackedN16,
//! WinogradF43N16, Linear PackedN16 and RowMajor) runs through `Model`/`Session` and must
//! give the bytes of the same file with f32 (f16-rounded) weights.

mod common;
use common::*;
use half::f16;
use resq::format::*;
use resq::kernels::gemm::{
    conv2d_packed, conv2d_packed_scratch_len, conv2d_winograd, conv2d_winograd_scratch_len, micro_kernel,
    micro_kernel_for, Act, ConvGeom, Epilogue, MicroTile, MR,
};
use resq::kernels::generic::conv::conv2d_nhwc_ohwi_f32;
use resq::kernels::generic::gemm::{gemm_f16_6x16__generic, gemm_f32_6x16__generic};
use resq::kernels::generic::linear::linear_f32;
use resq::kernels::pack::{pack_n16, pack_winograd_f43};
use resq::team::Team;
use resq::Isa;

fn isas() -> Vec<Isa> {
    let mut v = vec![Isa::Generic];
    if Isa::Avx2Fma.is_supported() {
        v.push(Isa::Avx2Fma);
    } else {
        eprintln!("SKIP: AVX2+FMA+F16C not available on this CPU; only the generic kernels are tested");
    }
    v
}

/// Values of mixed magnitudes (so f16 rounding, subnormals and the f16 range all occur).
fn weights(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = r.f32();
            match i % 11 {
                0 => v * 1e-5, // f16 subnormal range
                1 => v * 300.0,
                _ => v,
            }
        })
        .collect()
}

fn to_f16(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

fn widen(v: &[f16]) -> Vec<f32> {
    v.iter().map(|h| h.to_f32()).collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
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
    let [pt, pl, pb, pr] = pads;
    ConvGeom {
        n,
        in_h: hw.0,
        in_w: hw.1,
        in_c: c.0,
        out_h: (hw.0 + pt + pb - dil * (k.0 - 1) - 1) / s + 1,
        out_w: (hw.1 + pl + pr - dil * (k.1 - 1) - 1) / s + 1,
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

/// Naive f64 conv with OHWI weights: (value, mass) per output.
fn naive(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, res: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
    let (i_g, o_g) = (g.in_c / g.groups, g.out_c / g.groups);
    let len = g.y_len();
    let (mut val, mut mass) = (vec![0.0f64; len], vec![0.0f64; len]);
    for b in 0..g.n {
        for oh in 0..g.out_h {
            for ow in 0..g.out_w {
                for oc in 0..g.out_c {
                    let (mut s, mut m) = (0.0f64, 0.0f64);
                    for r in 0..g.kh {
                        for q in 0..g.kw {
                            let ih = (oh * g.stride_h + r * g.dil_h) as isize - g.pad_top as isize;
                            let iw = (ow * g.stride_w + q * g.dil_w) as isize - g.pad_left as isize;
                            if ih < 0 || iw < 0 || ih >= g.in_h as isize || iw >= g.in_w as isize {
                                continue;
                            }
                            for ci in 0..i_g {
                                let xi = ((b * g.in_h + ih as usize) * g.in_w + iw as usize) * g.in_c
                                    + (oc / o_g) * i_g
                                    + ci;
                                let p = x[xi] as f64 * w[((oc * g.kh + r) * g.kw + q) * i_g + ci] as f64;
                                s += p;
                                m += p.abs();
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
                    val[o] = s.max(0.0); // the cases use ReLU
                    mass[o] = m;
                }
            }
        }
    }
    (val, mass)
}

fn check_naive(what: &str, got: &[f32], want: &(Vec<f64>, Vec<f64>), tol: f64) {
    for (i, (&gv, (&wv, &m))) in got.iter().zip(want.0.iter().zip(&want.1)).enumerate() {
        let err = (gv as f64 - wv).abs();
        assert!(gv.is_finite() && err <= tol * m + 1e-30, "{what}: element {i}: got {gv}, want {wv} (mass {m})");
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Algo {
    Direct,
    Packed,
    Winograd,
}

struct Case {
    g: ConvGeom,
    x: Vec<f32>,
    /// OHWI weights, already f16-rounded (so both runs see the same values).
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
    res: Option<Vec<f32>>,
}

impl Case {
    fn new(r: &mut Rng, g: ConvGeom, bias: bool, res: bool) -> Case {
        let w = widen(&to_f16(&weights(r, g.w_len())));
        Case { x: r.vec(g.x_len()), w, bias: bias.then(|| r.vec(g.out_c)), res: res.then(|| r.vec(g.y_len())), g }
    }

    /// The weight in `algo`'s layout as f32. For Winograd this is `G g Gᵀ` rounded to f16
    /// (what an fp16 file stores), widened.
    fn w32(&self, algo: Algo) -> Vec<f32> {
        let g = &self.g;
        match algo {
            Algo::Direct => self.w.clone(),
            Algo::Packed => pack_n16(&self.w, g.out_c, g.kh, g.kw, g.in_c / g.groups, g.groups),
            Algo::Winograd => widen(&to_f16(&pack_winograd_f43(&self.w, g.out_c, g.in_c))),
        }
    }

    /// Runs `algo` with weight elements `W`; checks nothing past the output was written.
    fn run<W: resq::kernels::pack::WeightElem>(&self, isa: Isa, algo: Algo, w: &[W], pool: Option<&Team>) -> Vec<f32> {
        let g = &self.g;
        let threads = pool.map_or(1, |p| p.threads());
        let y_len = g.y_len();
        let mut y = vec![-777.0f32; y_len + 16];
        let ep = Epilogue { bias: self.bias.as_deref(), residual: self.res.as_deref(), act: Act::Relu };
        match algo {
            Algo::Direct => conv2d_nhwc_ohwi_f32(g, &self.x, w, ep.bias, ep.residual, ep.act, &mut y[..y_len], pool),
            Algo::Packed => {
                let mut s = vec![0.0; conv2d_packed_scratch_len(g, threads)];
                conv2d_packed(isa, g, &self.x, w, &ep, &mut y[..y_len], &mut s, pool)
            }
            Algo::Winograd => {
                let mut s = vec![0.0; conv2d_winograd_scratch_len(g, threads)];
                conv2d_winograd(isa, g, &self.x, w, &ep, &mut y[..y_len], &mut s, pool)
            }
        }
        assert!(y[y_len..].iter().all(|&v| v == -777.0), "{algo:?} wrote past the output ({g:?})");
        y.truncate(y_len);
        y
    }

    /// f16 run vs f32 run on the widened weights: bit-identical; the f32 run vs naive.
    fn check(&self, isa: Isa, algo: Algo, pool: Option<&Team>) {
        let w32 = self.w32(algo);
        let w16 = to_f16(&w32);
        assert!(same_bits(&widen(&w16), &w32));
        let a = self.run(isa, algo, &w16, pool);
        let b = self.run(isa, algo, &w32, pool);
        assert!(same_bits(&a, &b), "{isa} {algo:?} {:?}: f16 kernel differs from the f32 kernel", self.g);
        // Against the naive conv of the stored (f16) weights. Not for Winograd: there the file
        // stores U = G g Gᵀ rounded to f16, whose rounding error is not that of any spatial
        // weight and leaks across the taps of a tile (a large weight on a padding tap perturbs
        // the outputs next to the border); the f32 Winograd kernel is checked against naive in
        // kernels_f32.rs and the f16 one is bit-identical to it on the stored U (above).
        if pool.is_none() && algo != Algo::Winograd {
            let want = naive(&self.g, &self.x, &self.w, self.bias.as_deref(), self.res.as_deref());
            check_naive(&format!("{isa} {algo:?} {:?}", self.g), &a, &want, 1e-5);
        }
    }
}

#[test]
fn micro_kernel_f16_matches_f32_on_widened_panels() {
    let mut r = Rng::new(0x5eed);
    let mut ks: Vec<usize> = (1..=20).collect();
    ks.extend([31, 64, 65, 257]);
    let ldc = 19;
    for isa in isas() {
        let (k16, k32) = (micro_kernel_for::<f16>(isa), micro_kernel(isa));
        for m in 1..=MR {
            for n in 1..=16 {
                for &k in &ks {
                    let a = r.vec(MR * k);
                    let b16 = to_f16(&weights(&mut r, 16 * k));
                    let b32 = widen(&b16);
                    let (bias, res, c0) = (r.vec(16), r.vec(MR * ldc), r.vec(MR * ldc));
                    let (load_c, finish) = (k % 2 == 0, k % 3 != 1);
                    let act = [Act::None, Act::Relu, Act::Clip(-0.5, 0.25)][(m + n) % 3];
                    let bias_p = if n % 2 == 0 { bias.as_ptr() } else { core::ptr::null() };
                    let res_p = if m % 2 == 0 { res.as_ptr() } else { core::ptr::null() };
                    fn tile<W>(
                        (m, n, k, ldc): (usize, usize, usize, usize),
                        a: &[f32],
                        b: *const W,
                        c: *mut f32,
                        (bias, residual, act, load_c, finish): (*const f32, *const f32, Act, bool, bool),
                    ) -> MicroTile<W> {
                        MicroTile {
                            m,
                            n,
                            k,
                            a: core::array::from_fn(|i| a[if i < m { i } else { 0 } * k..].as_ptr()),
                            b,
                            c,
                            ldc,
                            bias,
                            residual,
                            ldr: ldc,
                            act,
                            load_c,
                            finish,
                        }
                    }
                    let dims = (m, n, k, ldc);
                    let ep = (bias_p, res_p, act, load_c, finish);
                    let (mut c16, mut c32, mut cg, mut cg32) = (c0.clone(), c0.clone(), c0.clone(), c0.clone());
                    let t16 = tile(dims, &a, b16.as_ptr(), c16.as_mut_ptr(), ep);
                    let t32 = tile(dims, &a, b32.as_ptr(), c32.as_mut_ptr(), ep);
                    let tg = tile(dims, &a, b16.as_ptr(), cg.as_mut_ptr(), ep);
                    let tg32 = tile(dims, &a, b32.as_ptr(), cg32.as_mut_ptr(), ep);
                    // SAFETY: a rows hold k f32, b 16*k elements, c/res MR rows at stride
                    // ldc >= n, bias 16 f32.
                    unsafe {
                        k16(&t16);
                        k32(&t32);
                        gemm_f16_6x16__generic(&tg);
                        gemm_f32_6x16__generic(&tg32);
                    }
                    assert!(same_bits(&c16, &c32), "{isa}: m={m} n={n} k={k}: f16 kernel != f32 kernel");
                    // The generic f16 twin is the generic f32 kernel on the widened panel.
                    assert!(same_bits(&cg, &cg32), "generic: m={m} n={n} k={k}: f16 twin != f32 twin");
                    // SIMD vs generic: the f32 tolerance of kernels_f32.rs (mass-relative).
                    for i in 0..m {
                        for j in 0..n {
                            let mass: f64 =
                                (0..k).map(|kk| (a[i * k + kk] as f64 * b32[kk * 16 + j] as f64).abs()).sum::<f64>()
                                    + (c0[i * ldc + j] as f64).abs()
                                    + (bias[j] as f64).abs()
                                    + (res[i * ldc + j] as f64).abs();
                            let (s, g) = (c16[i * ldc + j] as f64, cg[i * ldc + j] as f64);
                            assert!(
                                (s - g).abs() <= 1e-6 * mass + 1e-30,
                                "{isa}: m={m} n={n} k={k} ({i},{j}): {s} vs {g}"
                            );
                        }
                    }
                    // Outside the tile nothing changed.
                    for idx in 0..MR * ldc {
                        if !(idx / ldc < m && idx % ldc < n) {
                            assert_eq!(
                                c16[idx].to_bits(),
                                c0[idx].to_bits(),
                                "{isa}: m={m} n={n} k={k} wrote at {idx}"
                            );
                        }
                    }
                }
            }
        }
    }
}

fn conv_cases(r: &mut Rng) -> Vec<(Case, Algo)> {
    let mut cases = Vec::new();
    let chans = [1usize, 3, 8, 15, 16, 17, 33];
    let mut i = 0usize;
    for &ci in &chans {
        for &co in &chans {
            i += 1;
            let hw = [(5, 7), (9, 9), (6, 11), (1, 3), (8, 8)][i % 5];
            let (k, s, pads, dil) = match i % 6 {
                0 => ((3, 3), 1, [1, 1, 1, 1], 1),
                1 => ((3, 3), 2, [1, 1, 1, 1], 1),
                2 => ((1, 1), 1, [0; 4], 1),
                3 => ((1, 1), 2, [0; 4], 1),
                4 => ((3, 3), 1, [1, 0, 2, 1], 2),
                _ => ((7, 7), 2, [3; 4], 1),
            };
            if hw.0 + pads[0] + pads[2] < dil * (k.0 - 1) + 1 || hw.1 + pads[1] + pads[3] < dil * (k.1 - 1) + 1 {
                continue;
            }
            let g = geom(1 + i % 2, hw, (ci, co), k, s, pads, dil, 1);
            cases.push((Case::new(r, g, i % 2 == 0, i % 3 == 0), Algo::Packed));
            if i % 4 == 0 {
                cases.push((Case::new(r, g, i % 3 == 0, i % 2 == 0), Algo::Direct));
            }
            if k == (3, 3) && s == 1 && dil == 1 {
                cases.push((Case::new(r, g, true, i % 2 == 1), Algo::Winograd));
            }
        }
    }
    // Winograd with padding variants, interior and edge tiles, channel tails.
    for (hw, c, pads) in [
        ((3, 3), (13, 17), [1, 1, 1, 1]),
        ((21, 18), (19, 21), [1, 2, 0, 1]),
        ((14, 14), (64, 40), [1; 4]),
        ((11, 6), (8, 33), [0; 4]),
    ] {
        cases.push((Case::new(r, geom(1, hw, c, (3, 3), 1, pads, 1, 1), true, true), Algo::Winograd));
    }
    // Groups (incl. depthwise), K blocking (K > 256), several row blocks.
    for (c, groups, k) in [((4, 4), 4, (3, 3)), ((6, 9), 3, (3, 3)), ((34, 34), 2, (1, 1)), ((16, 32), 16, (3, 3))] {
        let pads = if k.0 == 3 { [1; 4] } else { [0; 4] };
        cases.push((Case::new(r, geom(2, (7, 6), c, k, 1, pads, 1, groups), true, true), Algo::Packed));
        cases.push((Case::new(r, geom(1, (5, 5), c, k, 1, pads, 1, groups), false, true), Algo::Direct));
    }
    cases.push((Case::new(r, geom(1, (3, 3), (600, 17), (1, 1), 1, [0; 4], 1, 1), true, false), Algo::Packed));
    cases.push((Case::new(r, geom(1, (9, 9), (64, 20), (3, 3), 1, [1; 4], 1, 1), true, true), Algo::Packed));
    cases.push((Case::new(r, geom(2, (20, 13), (8, 24), (1, 1), 1, [0; 4], 1, 1), true, true), Algo::Packed));
    cases
}

#[test]
fn conv_f16_matches_f32_on_rounded_weights_every_tier() {
    let mut r = Rng::new(2024);
    let cases = conv_cases(&mut r);
    for (c, algo) in &cases {
        for isa in isas() {
            c.check(isa, *algo, None);
        }
    }
    eprintln!("conv f16: {} cases", cases.len());
}

#[test]
fn conv_f16_is_bit_identical_across_thread_counts() {
    let mut r = Rng::new(7);
    let teams: Vec<Team> = (1..=4).map(|t| Team::new(t).expect("team")).collect();
    let cases = [
        (Case::new(&mut r, geom(1, (28, 28), (32, 48), (3, 3), 2, [1; 4], 1, 1), true, true), Algo::Packed),
        (Case::new(&mut r, geom(1, (7, 7), (300, 70), (1, 1), 1, [0; 4], 1, 1), true, true), Algo::Packed),
        (Case::new(&mut r, geom(3, (1, 1), (520, 100), (1, 1), 1, [0; 4], 1, 1), true, false), Algo::Packed),
        (Case::new(&mut r, geom(1, (28, 28), (16, 32), (3, 3), 1, [1; 4], 1, 1), true, true), Algo::Winograd),
        (Case::new(&mut r, geom(1, (7, 7), (64, 160), (3, 3), 1, [1; 4], 1, 1), true, true), Algo::Winograd),
        (Case::new(&mut r, geom(1, (9, 9), (16, 24), (3, 3), 1, [1; 4], 1, 1), true, true), Algo::Direct),
    ];
    for (c, algo) in &cases {
        for isa in isas() {
            let w16 = to_f16(&c.w32(*algo));
            let single = c.run(isa, *algo, &w16, None);
            for team in &teams {
                c.check(isa, *algo, Some(team));
                let y = c.run(isa, *algo, &w16, Some(team));
                assert!(same_bits(&y, &single), "{isa} {algo:?} {:?}: {} threads differ from 1", c.g, team.threads());
            }
        }
    }
}

#[test]
fn linear_rowmajor_f16_matches_f32() {
    let mut r = Rng::new(99);
    let team = Team::new(3).expect("team");
    for (m, k, n) in [(1, 1, 1), (1, 7, 3), (2, 64, 65), (1, 2048, 10), (3, 33, 130)] {
        let x = r.vec(m * k);
        let w16 = to_f16(&weights(&mut r, n * k));
        let w32 = widen(&w16);
        let bias = r.vec(n);
        for pool in [None, Some(&team)] {
            let (mut a, mut b) = (vec![0.0; m * n], vec![0.0; m * n]);
            linear_f32(m, k, n, &x, &w16, Some(&bias), Act::None, &mut a, pool);
            linear_f32(m, k, n, &x, &w32, Some(&bias), Act::None, &mut b, pool);
            assert!(same_bits(&a, &b), "linear {m}x{k}x{n}: f16 differs from f32");
            for (j, &v) in a.iter().enumerate() {
                let (row, col) = (j / n, j % n);
                let want: f64 =
                    bias[col] as f64 + (0..k).map(|kk| x[row * k + kk] as f64 * w32[col * k + kk] as f64).sum::<f64>();
                let mass: f64 = (0..k).map(|kk| (x[row * k + kk] as f64 * w32[col * k + kk] as f64).abs()).sum::<f64>()
                    + (bias[col] as f64).abs();
                assert!((v as f64 - want).abs() <= 1e-5 * mass, "linear {m}x{k}x{n} [{j}]: {v} vs {want}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// A hand-built fp16 file through Model / Session.

fn f16_bytes(v: &[f32]) -> Vec<u8> {
    to_f16(v).iter().flat_map(|h| h.to_le_bytes()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn conv_params(k: u32, stride: u32, pad: u32, algo: u32, relu: bool) -> ConvParams {
    ConvParams {
        kernel_h: k,
        kernel_w: k,
        stride_h: stride,
        stride_w: stride,
        pad_top: pad,
        pad_left: pad,
        pad_bottom: pad,
        pad_right: pad,
        dilation_h: 1,
        dilation_w: 1,
        groups: 1,
        act: if relu { ActKind::Relu as u32 } else { 0 },
        algo,
        ..Default::default()
    }
}

/// Input [1,5,9,9] -> Winograd 3x3 5->17 (+bias, ReLU) -> packed 3x3/2 17->20 (+bias, ReLU)
/// -> direct OHWI 1x1 20->6 -> GlobalAvgPool -> [1,6] -> Linear PackedN16 6->10 (ReLU)
/// -> Linear RowMajor 10->4. Weights f16-rounded; stored as F16 when `half` (else F32).
fn fp16_model(half: bool) -> Vec<u8> {
    let mut r = Rng::new(1234);
    let round = |v: Vec<f32>| widen(&to_f16(&v));
    let w_a = round(weights(&mut r, 17 * 9 * 5));
    let w_b = round(weights(&mut r, 20 * 9 * 17));
    let w_c = round(weights(&mut r, 6 * 20));
    let w_d = round(weights(&mut r, 10 * 6));
    let w_e = round(weights(&mut r, 4 * 10));
    let (b_a, b_b, b_d, b_e) = (r.vec(17), r.vec(20), r.vec(10), r.vec(4));
    // Winograd U rounded to f16 in both files (what an fp16 converter stores).
    let u_a = widen(&to_f16(&pack_winograd_f43(&w_a, 17, 5)));
    let p_b = pack_n16(&w_b, 20, 3, 3, 17, 1);
    let p_d = pack_n16(&w_d, 10, 1, 1, 6, 1);
    build([1, 5, 9, 9], move |b, x, _| {
        let dt = if half { DType::F16 } else { DType::F32 };
        let bytes = |v: &[f32]| if half { f16_bytes(v) } else { f32_bytes(v) };
        let wa = b.constant("a.w", dt, Layout::WinogradF43N16, &[17, 3, 3, 5], bytes(&u_a));
        let ba = b.constant_f32("a.b", Layout::RowMajor, &[17], &b_a);
        let ya = b.activation("a", DType::F32, Layout::Nhwc, &[1, 9, 9, 17]);
        b.op(OpKind::Conv2d, "a", &[x, wa, ba, NONE], &[ya], &conv_params(3, 1, 1, 2, true));
        let wb = b.constant("b.w", dt, Layout::PackedN16, &[20, 3, 3, 17], bytes(&p_b));
        let bb = b.constant_f32("b.b", Layout::RowMajor, &[20], &b_b);
        let yb = b.activation("b", DType::F32, Layout::Nhwc, &[1, 5, 5, 20]);
        b.op(OpKind::Conv2d, "b", &[ya, wb, bb, NONE], &[yb], &conv_params(3, 2, 1, 1, true));
        let wc = b.constant("c.w", dt, Layout::Ohwi, &[6, 1, 1, 20], bytes(&w_c));
        let yc = b.activation("c", DType::F32, Layout::Nhwc, &[1, 5, 5, 6]);
        b.op(OpKind::Conv2d, "c", &[yb, wc, NONE, NONE], &[yc], &conv_params(1, 1, 0, 0, false));
        let gp = b.activation("gap", DType::F32, Layout::Nhwc, &[1, 1, 1, 6]);
        b.op(OpKind::GlobalAvgPool, "gap", &[yc], &[gp], &[0u32; 0]);
        let fl = b.activation("flat", DType::F32, Layout::RowMajor, &[1, 6]);
        b.op(OpKind::Copy, "flatten", &[gp], &[fl], &[0u32; 0]);
        let wd = b.constant("d.w", dt, Layout::PackedN16, &[10, 6], bytes(&p_d));
        let bd = b.constant_f32("d.b", Layout::RowMajor, &[10], &b_d);
        let yd = b.activation("d", DType::F32, Layout::RowMajor, &[1, 10]);
        let relu = ActParams { act: ActKind::Relu as u32, ..Default::default() };
        b.op(OpKind::Linear, "d", &[fl, wd, bd], &[yd], &relu);
        let we = b.constant("e.w", dt, Layout::RowMajor, &[4, 10], bytes(&w_e));
        let be = b.constant_f32("e.b", Layout::RowMajor, &[4], &b_e);
        let ye = b.activation("e", DType::F32, Layout::RowMajor, &[1, 4]);
        b.op(OpKind::Linear, "e", &[yd, we, be], &[ye], &ActParams::default());
        ye
    })
}

#[test]
fn fp16_file_runs_like_the_f32_file_with_rounded_weights() {
    let (b16, b32) = (fp16_model(true), fp16_model(false));
    assert!(b16.len() < b32.len(), "the f16 file should be smaller ({} vs {} bytes)", b16.len(), b32.len());
    let (m16, m32) = (
        resq::Model::from_bytes(b16).expect("fp16 model loads"),
        resq::Model::from_bytes(b32).expect("f32 model loads"),
    );
    let x = Rng::new(5).vec(m16.input_len());
    for isa in isas() {
        for threads in [1, 2] {
            let opts = resq::Options::default().threads(threads).max_isa(isa);
            let y16 = m16.session(opts.clone()).expect("session").run(&x).expect("run").to_vec();
            let y32 = m32.session(opts).expect("session").run(&x).expect("run").to_vec();
            assert_eq!(y16.len(), 4);
            assert!(y16.iter().any(|&v| v != 0.0), "degenerate output {y16:?}");
            assert!(same_bits(&y16, &y32), "{isa}, {threads} threads: fp16 file {y16:?} vs f32 file {y32:?}");
        }
    }
    // The loader checks F16 payload sizes (elems * 2): an F16 weight with an F32-sized payload
    // is rejected with an error naming the size.
    let bad = build([1, 4, 1, 1], |b, x, _| {
        let fl = b.activation("flat", DType::F32, Layout::RowMajor, &[1, 4]);
        b.op(OpKind::Copy, "flatten", &[x], &[fl], &[0u32; 0]);
        let w = b.constant("w", DType::F16, Layout::PackedN16, &[3, 4], vec![0u8; 16 * 4 * 4]);
        let y = b.activation("y", DType::F32, Layout::RowMajor, &[1, 3]);
        b.op(OpKind::Linear, "fc", &[fl, w], &[y], &ActParams::default());
        y
    });
    let err = resq::Model::from_bytes(bad).expect_err("wrong F16 payload size accepted");
    assert!(err.to_string().contains("data_size"), "{err}");
}
