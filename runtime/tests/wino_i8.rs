//! Exact int8 Winograd F(2x2,3x3): byte-identical to the direct int8 convolution (the
//! generic `conv2d_i8`, itself checked against the spec in `kernels_i8.rs`) on the generic and
//! AVX2 tiers, over random shapes around the tile edges (odd/even and tiny H/W, paddings 0
//! and 1 per side, channel counts off every vector width, residual on/off, extreme zero
//! points, activations and weights), 1 to 4 threads, with no writes past the output; the
//! exactness bound at its limit; and a whole int8 model with Winograd on and off.

use resq::kernels::gemm::ConvGeom;
use resq::kernels::int8::pack::pack_i8_n16k4;
use resq::kernels::int8::winograd::{
    conv2d_i8_wino, conv2d_i8_wino_scratch_len, supported, transform_weights_f23, transformed_len, MAX_IN_C,
};
use resq::kernels::int8::{conv2d_i8, conv2d_i8_scratch_len, QEpilogue};
use resq::team::{Parallel, Team};
use resq::{Isa, Model, Options};
use std::path::Path;

/// Filler of the bytes past each output: a kernel writing out of bounds changes them.
const SENTINEL: i8 = 0x5a;
const TAIL: usize = 23;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
    /// A zero point: -128, 0, 127 or random.
    fn zp(&mut self) -> i32 {
        let v = (self.next() as i8) as i32;
        self.pick(&[-128, 0, 127, v])
    }
    /// Random i8 with the extremes (-128, 127) mixed in.
    fn i8(&mut self) -> i8 {
        match self.below(8) {
            0 => -128,
            1 => 127,
            _ => self.next() as i8,
        }
    }
    /// Weights: [-127, 127], the extremes often.
    fn w8(&mut self) -> i8 {
        match self.below(6) {
            0 => -127,
            1 => 127,
            _ => (self.next() as i8).max(-127),
        }
    }
}

fn geom(n: usize, h: usize, w: usize, ci: usize, co: usize, pads: [usize; 4]) -> Option<ConvGeom> {
    let [pt, pl, pb, pr] = pads;
    let out_h = (h + pt + pb).checked_sub(2)?;
    let out_w = (w + pl + pr).checked_sub(2)?;
    (out_h >= 1 && out_w >= 1).then_some(ConvGeom {
        n,
        in_h: h,
        in_w: w,
        in_c: ci,
        out_h,
        out_w,
        out_c: co,
        kh: 3,
        kw: 3,
        stride_h: 1,
        stride_w: 1,
        pad_top: pt,
        pad_left: pl,
        dil_h: 1,
        dil_w: 1,
        groups: 1,
    })
}

/// qparams rows `[bias, m_acc, m_res, shift]` spreading outputs over the int8 range; shifts
/// below 32 on some channels (the kernels' slow requantisation path).
fn qparams(r: &mut Rng, co: usize, k: usize, residual: bool) -> Vec<i32> {
    let base = 30 + (60.0 * (k as f64).sqrt()).log2().round() as i32;
    (0..co)
        .flat_map(|_| {
            let small = r.below(4) == 0;
            let shift = if small { 20 + r.below(8) as i32 } else { base + r.below(3) as i32 };
            let m_acc =
                if small { (1 << (shift - 4)) + r.below(1000) as i32 } else { (1 << 30) + r.below(1 << 29) as i32 };
            let m_acc = if r.below(20) == 0 { 0 } else { m_acc };
            let m_res = if residual { (r.next() as i32).rem_euclid(1 << (shift - 2).min(30)) } else { 0 };
            let bias = (r.next() as i32) % 50_000;
            [bias, m_acc, m_res, shift]
        })
        .collect()
}

struct Case {
    g: ConvGeom,
    x: Vec<i8>,
    z_x: i32,
    w: Vec<i8>,
    qp: Vec<i32>,
    res: Option<Vec<i8>>,
    z_res: i32,
    z_y: i32,
    qmin: i32,
    qmax: i32,
}

impl Case {
    fn ep(&self) -> QEpilogue<'_> {
        QEpilogue {
            qparams: &self.qp,
            residual: self.res.as_deref(),
            z_res: self.z_res,
            z_y: self.z_y,
            qmin: self.qmin,
            qmax: self.qmax,
        }
    }
}

fn random_case(r: &mut Rng) -> Case {
    let g = loop {
        let n = 1 + r.below(2);
        let h = r.pick(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15]);
        let w = r.pick(&[1, 2, 3, 4, 5, 7, 8, 11, 16]);
        let ci = r.pick(&[1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 31, 33, 40, 64]);
        let co = r.pick(&[1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 40]);
        let pads = core::array::from_fn(|_| r.below(2));
        if let Some(g) = geom(n, h, w, ci, co, pads) {
            break g;
        }
    };
    let z_x = r.zp();
    let x = (0..g.x_len()).map(|_| r.i8()).collect();
    let ohwi: Vec<i8> = (0..g.w_len()).map(|_| r.w8()).collect();
    let w = pack_i8_n16k4(&ohwi, g.out_c, 3, 3, g.in_c, 1);
    let residual = r.below(2) == 0;
    let qp = qparams(r, g.out_c, 9 * g.in_c, residual);
    let res = residual.then(|| (0..g.y_len()).map(|_| r.i8()).collect());
    let z_y = r.zp();
    let (qmin, qmax) = match r.below(3) {
        0 => (-128, 127),
        1 => (z_y.max(-128), 127),
        _ => (-100, 90),
    };
    Case { g, x, z_x, w, qp, res, z_res: r.pick(&[-128, 0, 127, 5]), z_y, qmin, qmax }
}

/// The direct convolution's bytes (generic kernel, one thread).
fn direct(k: &Case) -> Vec<i8> {
    let mut y = vec![0i8; k.g.y_len()];
    let mut s = vec![0f32; conv2d_i8_scratch_len(&k.g, 1)];
    conv2d_i8(Isa::Generic, &k.g, &k.x, k.z_x, &k.w, &k.ep(), &mut y, &mut s, None::<&Team>);
    y
}

/// Winograd's bytes on `isa` with `pool`, plus the sentinel tail (must stay untouched).
fn wino(k: &Case, u: &[i16], isa: Isa, pool: Option<&dyn Parallel>) -> Vec<i8> {
    let threads = pool.map_or(1, |p| p.threads());
    let mut y = vec![SENTINEL; k.g.y_len() + TAIL];
    let mut s = vec![0f32; conv2d_i8_wino_scratch_len(&k.g, threads)];
    conv2d_i8_wino(isa, &k.g, &k.x, k.z_x, u, &k.ep(), &mut y, &mut s, pool);
    y
}

fn tiers() -> Vec<Isa> {
    let mut v = vec![Isa::Generic];
    if Isa::Avx2Fma.is_supported() {
        v.push(Isa::Avx2Fma);
    } else {
        eprintln!("SKIP: AVX2 not available on this CPU; only the generic Winograd kernels are tested");
    }
    v
}

fn check(k: &Case, teams: &[Team], label: &str) {
    assert!(supported(&k.g), "{label}: {:?} should be supported", k.g);
    let u = transform_weights_f23(&k.w, k.g.out_c, k.g.in_c).expect("transformed weights");
    assert_eq!(Some(u.len()), transformed_len(k.g.out_c, k.g.in_c));
    let want = direct(k);
    for isa in tiers() {
        let pools: Vec<Option<&dyn Parallel>> =
            std::iter::once(None).chain(teams.iter().map(|t| Some(t as &dyn Parallel))).collect();
        for pool in pools {
            let threads = pool.map_or(1, |p| p.threads());
            let got = wino(k, &u, isa, pool);
            let (body, tail) = got.split_at(k.g.y_len());
            if let Some(i) = body.iter().zip(&want).position(|(a, b)| a != b) {
                let (pix, o) = (i / k.g.out_c, i % k.g.out_c);
                panic!(
                    "{label} {isa:?} {threads} threads: byte {i} (pixel {pix}, channel {o}) is {} but the direct conv gives {} ({:?}, z_x {}, residual {})",
                    body[i],
                    want[i],
                    k.g,
                    k.z_x,
                    k.res.is_some()
                );
            }
            assert!(tail.iter().all(|&b| b == SENTINEL), "{label} {isa:?} {threads} threads: wrote past the output");
        }
    }
}

#[test]
fn winograd_matches_the_direct_conv_byte_for_byte_on_random_shapes() {
    let teams: Vec<Team> = (2..=4).map(|t| Team::new(t).expect("team")).collect();
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..150 {
        let k = random_case(&mut r);
        check(&k, &teams, &format!("case {case}"));
    }
}

/// Every tile/channel edge in one deterministic sweep: H, W in {1, 2, 3, 7} (outputs of 1 to
/// 7 with both paddings), channel counts around 2/8/16.
#[test]
fn winograd_matches_the_direct_conv_on_every_small_edge() {
    let teams = [Team::new(3).expect("team")];
    let mut r = Rng(12345);
    for &(h, w) in &[(1, 1), (2, 3), (3, 2), (7, 7), (3, 7), (2, 2)] {
        for pads in [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 1, 0]] {
            for &(ci, co) in &[(1, 1), (2, 17), (15, 8), (17, 16), (33, 31)] {
                let Some(g) = geom(1, h, w, ci, co, pads) else { continue };
                let mut k = random_case(&mut r);
                k.g = g;
                k.x = (0..g.x_len()).map(|_| r.i8()).collect();
                let ohwi: Vec<i8> = (0..g.w_len()).map(|_| r.w8()).collect();
                k.w = pack_i8_n16k4(&ohwi, co, 3, 3, ci, 1);
                k.qp = qparams(&mut r, co, 9 * ci, k.res.is_some());
                k.res = k.res.map(|_| (0..g.y_len()).map(|_| r.i8()).collect());
                check(&k, &teams, &format!("{h}x{w} pads {pads:?} {ci}->{co}"));
            }
        }
    }
}

/// The exactness bound at its limit: `C = MAX_IN_C` with every activation -128 and every
/// weight -127 (and +127) gives `|4*acc|` just under 2^31, and the bytes still match; one
/// channel more is not supported.
#[test]
fn winograd_is_exact_at_the_channel_bound() {
    let mut r = Rng(777);
    for wv in [-127i8, 127] {
        let g = geom(1, 4, 3, MAX_IN_C, 3, [1, 1, 1, 1]).unwrap();
        let x = vec![-128i8; g.x_len()];
        let w = pack_i8_n16k4(&vec![wv; g.w_len()], 3, 3, 3, MAX_IN_C, 1);
        // acc up to 9*3640*128*127 = 532,546,560 (~2^29): scale it into the int8 range.
        let qp: Vec<i32> = (0..3).flat_map(|o| [o * 1000, (1 << 30) + o, 0, 53]).collect();
        let k = Case { g, x, z_x: -128, w, qp, res: None, z_res: 0, z_y: 3, qmin: -128, qmax: 127 };
        let want = direct(&k);
        assert!(want.iter().any(|&v| v != 127 && v != -128), "the test must not saturate: {want:?}");
        check(&k, &[], &format!("bound, w = {wv}"));
    }
    let mut k = random_case(&mut r);
    k.g.in_c = MAX_IN_C + 1;
    assert!(!supported(&k.g));
}

/// A whole int8 model (the committed ResNet-20, whose 32x32 and 16x16 3x3 layers get
/// Winograd weights on AVX2 CPUs) gives the same bytes with Winograd on and off, 1 and 3
/// threads.
#[test]
fn int8_model_gives_the_same_bytes_with_winograd_on_and_off() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/resnet20/resnet20_int8.resq");
    let model = Model::open(&path).expect("int8 fixture loads");
    let wino_layers = model.ops().iter().filter(|o| o.algo == "int8-wino-f23").count();
    if Isa::detect() >= Isa::Avx2Fma && Isa::detect() <= Isa::Avx512 {
        assert!(wino_layers >= 10, "only {wino_layers} int8 layers got Winograd weights");
    } else {
        eprintln!("SKIP: the session tier {:?} has no int8 Winograd; comparing direct with direct", Isa::detect());
    }
    let mut r = Rng(4242);
    let inputs: Vec<Vec<f32>> =
        (0..3).map(|_| (0..model.input_len()).map(|_| (r.next() % 2000) as f32 / 1000.0 - 1.0).collect()).collect();
    for threads in [1, 3] {
        let mut off = model.session(Options::default().threads(threads).int8_winograd(false)).unwrap();
        let mut on = model.session(Options::default().threads(threads)).unwrap();
        for (i, input) in inputs.iter().enumerate() {
            let a: Vec<u32> = off.run(input).unwrap().iter().map(|v| v.to_bits()).collect();
            let b: Vec<u32> = on.run(input).unwrap().iter().map(|v| v.to_bits()).collect();
            assert_eq!(a, b, "input {i}, {threads} threads: logits differ with Winograd on");
        }
    }
}
