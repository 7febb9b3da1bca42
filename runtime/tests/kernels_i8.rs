//! Int8 kernels: the generic (scalar) kernels against naive definitions written straight from
//! the numerics spec (i64 everywhere), every AVX2 kernel against its scalar twin byte for
//! byte, thread-count bit-identity, and no writes outside the output.

use resq::kernels::gemm::ConvGeom;
use resq::kernels::int8::generic::{gemm_i8i32_6x8__generic, MicroTileI8};
use resq::kernels::int8::pack::{pack_i8_n16k4, packed_n16k4_len};
use resq::kernels::int8::{
    add_i8, avgpool_i8, conv2d_i8, conv2d_i8_scratch_len, dequantize_i8_f32, global_avgpool_i8, linear_i8,
    linear_i8_scratch_len, maxpool_i8, micro_kernel, quantize_f32_i8, requant_fits_lshift, Pool2dShape, QEpilogue, MR,
    NR,
};
use resq::team::{Parallel, Team};
use resq::Isa;

/// Filler of the bytes past each output: a kernel writing out of bounds changes them.
const SENTINEL: i8 = 0x5a;
const TAIL: usize = 19;

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
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    /// Random i8 with runs of the extremes (-128, 127) mixed in.
    fn i8(&mut self) -> i8 {
        match self.below(10) {
            0 => -128,
            1 => 127,
            _ => self.next() as i8,
        }
    }
    fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.i8()).collect()
    }
    /// Weights: [-127, 127] with the extremes mixed in.
    fn w8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| self.i8().max(-127)).collect()
    }
    /// A zero point, the extremes often.
    fn zp(&mut self) -> i32 {
        match self.below(5) {
            0 => -128,
            1 => 127,
            2 => 0,
            _ => self.range(-128, 127) as i32,
        }
    }
}

/// The ISAs to compare against generic (a skip is printed when AVX2 is missing).
fn simd_isas() -> Vec<Isa> {
    if Isa::Avx2Fma.is_supported() {
        vec![Isa::Avx2Fma]
    } else {
        eprintln!("SKIP: AVX2 not available on this CPU; only the generic int8 kernels are tested");
        Vec::new()
    }
}

/// Parallel runners: a rayon pool and the session's static team, 2 and 3 threads.
fn pools() -> Vec<Box<dyn Parallel>> {
    vec![
        Box::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("thread pool")),
        Box::new(Team::new(2).expect("team")),
        Box::new(Team::new(3).expect("team")),
    ]
}

// ---------------------------------------------------------------------------------------
// Naive definitions, straight from the spec, in i64.

/// `sra_round` of the spec.
fn spec_sra(t: i64, shift: i64) -> i64 {
    (t + (1i64 << (shift - 1))) >> shift
}

/// `requant` of the spec.
#[allow(clippy::too_many_arguments)]
fn spec_requant(s: i64, m_acc: i64, rq: i64, m_res: i64, shift: i64, z_y: i64, qmin: i64, qmax: i64) -> i8 {
    let t = s * m_acc + rq * m_res;
    (spec_sra(t, shift) + z_y).clamp(qmin, qmax) as i8
}

struct ConvCase {
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

impl ConvCase {
    fn naive(&self) -> Vec<i8> {
        let g = &self.g;
        let i_g = g.in_c / g.groups;
        let o_g = g.out_c / g.groups;
        let mut y = vec![0i8; g.y_len()];
        for b in 0..g.n {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    for oc in 0..g.out_c {
                        let grp = oc / o_g;
                        let mut acc = 0i64;
                        for r in 0..g.kh {
                            for q in 0..g.kw {
                                let ih = (oh * g.stride_h + r * g.dil_h) as i64 - g.pad_top as i64;
                                let iw = (ow * g.stride_w + q * g.dil_w) as i64 - g.pad_left as i64;
                                let inside = ih >= 0 && iw >= 0 && ih < g.in_h as i64 && iw < g.in_w as i64;
                                for ci in 0..i_g {
                                    let xv = if inside {
                                        self.x[((b * g.in_h + ih as usize) * g.in_w + iw as usize) * g.in_c
                                            + grp * i_g
                                            + ci] as i64
                                    } else {
                                        self.z_x as i64
                                    };
                                    acc += xv * self.w[((oc * g.kh + r) * g.kw + q) * i_g + ci] as i64;
                                }
                            }
                        }
                        let o = ((b * g.out_h + oh) * g.out_w + ow) * g.out_c + oc;
                        let qp = &self.qp[4 * oc..4 * oc + 4];
                        // |acc| < 2^31 for these shapes; the spec's s = acc.wrapping_add(bias).
                        let s = (acc as i32).wrapping_add(qp[0]) as i64;
                        let rq = self.res.as_ref().map_or(0, |r| r[o] as i64 - self.z_res as i64);
                        y[o] = spec_requant(
                            s,
                            qp[1] as i64,
                            rq,
                            qp[2] as i64,
                            qp[3] as i64,
                            self.z_y as i64,
                            self.qmin as i64,
                            self.qmax as i64,
                        );
                    }
                }
            }
        }
        y
    }

    /// Runs `conv2d_i8`; checks the bytes past the output are untouched.
    fn run(&self, isa: Isa, pool: Option<&dyn Parallel>) -> Vec<i8> {
        let g = &self.g;
        let i_g = g.in_c / g.groups;
        let packed = pack_i8_n16k4(&self.w, g.out_c, g.kh, g.kw, i_g, g.groups);
        assert_eq!(Some(packed.len()), packed_n16k4_len(g.out_c, g.kh, g.kw, i_g, g.groups));
        let threads = pool.map_or(1, |p| p.threads());
        let mut scratch = vec![0.0f32; conv2d_i8_scratch_len(g, threads)];
        let mut y = vec![SENTINEL; g.y_len() + TAIL];
        let ep = QEpilogue {
            qparams: &self.qp,
            residual: self.res.as_deref(),
            z_res: self.z_res,
            z_y: self.z_y,
            qmin: self.qmin,
            qmax: self.qmax,
        };
        conv2d_i8(isa, g, &self.x, self.z_x, &packed, &ep, &mut y, &mut scratch, pool);
        assert!(y[g.y_len()..].iter().all(|&v| v == SENTINEL), "{isa:?} wrote past y for {g:?}");
        y.truncate(g.y_len());
        y
    }
}

/// Per-channel qparams: most channels scaled so outputs spread over the int8 range, some with
/// the extreme multipliers and shifts the loader allows.
fn qparams(rng: &mut Rng, out_c: usize, k: usize, residual: bool, extreme: bool) -> Vec<i32> {
    let mut qp = Vec::with_capacity(out_c * 4);
    for _ in 0..out_c {
        let mode = if extreme { rng.below(5) } else { 3 };
        let (m_acc, shift) = match mode {
            0 => (i32::MAX, rng.range(1, 62) as u32),
            1 => (rng.range(0, 1) as i32, rng.range(1, 62) as u32),
            2 => (rng.range(0, i32::MAX as i64) as i32, if rng.below(2) == 0 { 1 } else { 62 }),
            // shift < 32 with multipliers small enough for the SIMD epilogues' left-shift
            // path (`requant_fits_lshift`), as residual layers have (m_res near 1).
            4 => {
                let shift = rng.range(1, 31);
                (rng.range(0, (1i64 << (shift + 6)).min(i32::MAX as i64)) as i32, shift as u32)
            }
            _ => {
                // M ~ 64 / (5000 * sqrt(K)): shift = 30 + log2(80 sqrt(K)) for m ~ 2^30.
                let lg = (80.0 * (k as f64).sqrt()).log2().round() as i64;
                (rng.range(1 << 29, i32::MAX as i64) as i32, (30 + lg + rng.range(-1, 1)) as u32)
            }
        };
        let m_res = if residual { rng.range(0, (1i64 << (shift as i64 - 1).min(31)) - 1) as i32 } else { 0 };
        let bias = match rng.below(4) {
            0 => rng.range(i32::MIN as i64, i32::MAX as i64) as i32,
            _ => rng.range(-(1 << 20), 1 << 20) as i32,
        };
        qp.extend_from_slice(&[bias, m_acc, m_res, shift as i32]);
    }
    qp
}

#[allow(clippy::too_many_arguments)]
fn geom(
    n: usize,
    hw: (usize, usize),
    c: (usize, usize),
    k: (usize, usize),
    s: (usize, usize),
    pads: [usize; 4],
    dil: (usize, usize),
    groups: usize,
) -> ConvGeom {
    let [pt, pl, pb, pr] = pads;
    ConvGeom {
        n,
        in_h: hw.0,
        in_w: hw.1,
        in_c: c.0,
        out_h: (hw.0 + pt + pb - dil.0 * (k.0 - 1) - 1) / s.0 + 1,
        out_w: (hw.1 + pl + pr - dil.1 * (k.1 - 1) - 1) / s.1 + 1,
        out_c: c.1,
        kh: k.0,
        kw: k.1,
        stride_h: s.0,
        stride_w: s.1,
        pad_top: pt,
        pad_left: pl,
        dil_h: dil.0,
        dil_w: dil.1,
        groups,
    }
}

fn case(rng: &mut Rng, g: ConvGeom, residual: bool, extreme: bool) -> ConvCase {
    let k = g.kh * g.kw * (g.in_c / g.groups);
    let z_y = rng.zp();
    let (qmin, qmax) = match rng.below(3) {
        0 => (-128, 127),
        1 => (z_y.max(-128), 127), // fused ReLU
        _ => {
            let a = rng.range(-128, 127) as i32;
            let b = rng.range(-128, 127) as i32;
            (a.min(b), a.max(b))
        }
    };
    ConvCase {
        x: rng.i8s(g.x_len()),
        z_x: rng.zp(),
        w: rng.w8s(g.w_len()),
        qp: qparams(rng, g.out_c, k, residual, extreme),
        res: residual.then(|| rng.i8s(g.y_len())),
        z_res: rng.zp(),
        z_y,
        qmin,
        qmax,
        g,
    }
}

/// Hand-picked shapes around the tile edges (6 rows, 8/16 channels, K groups of 4) and every
/// geometry feature.
fn edge_geoms() -> Vec<ConvGeom> {
    vec![
        geom(1, (5, 7), (3, 5), (3, 3), (1, 1), [1, 1, 1, 1], (1, 1), 1), // K = 27: partial k group
        geom(1, (4, 4), (8, 16), (1, 1), (1, 1), [0; 4], (1, 1), 1),      // 16 rows, one panel
        geom(2, (3, 5), (13, 17), (1, 1), (1, 1), [0; 4], (1, 1), 1),     // 30 rows, partial panel
        geom(1, (7, 7), (4, 33), (1, 1), (2, 2), [0; 4], (1, 1), 1),      // strided 1x1
        geom(1, (9, 8), (6, 24), (3, 3), (2, 1), [1, 0, 1, 2], (1, 1), 1), // asymmetric pads
        geom(1, (11, 9), (8, 8), (3, 3), (1, 1), [2, 2, 2, 2], (2, 2), 1), // dilation
        geom(1, (6, 6), (12, 18), (3, 3), (1, 1), [1, 1, 1, 1], (1, 1), 3), // groups, I_g = 4
        geom(1, (6, 5), (10, 10), (3, 3), (1, 1), [1, 1, 1, 1], (1, 1), 10), // depthwise, K = 9
        geom(1, (5, 5), (6, 4), (1, 1), (1, 1), [1, 1, 1, 1], (1, 1), 2), // padded 1x1, groups
        geom(3, (2, 3), (7, 49), (2, 2), (1, 1), [0, 1, 1, 0], (1, 1), 1), // 3 panels, partial
        geom(1, (13, 13), (3, 9), (7, 7), (2, 2), [3, 3, 3, 3], (1, 1), 1), // stem-like
        geom(1, (1, 1), (37, 3), (1, 1), (1, 1), [0; 4], (1, 1), 1),      // one row (Linear)
        geom(1, (3, 3), (5, 7), (3, 3), (3, 3), [4, 4, 4, 4], (1, 1), 1), // rows of pure padding
    ]
}

/// A random shape near the tile edges.
fn random_geom(rng: &mut Rng) -> ConvGeom {
    let groups = [1, 1, 1, 2, 3][rng.below(5)];
    let i_g = 1 + rng.below(13);
    let o_g = 1 + rng.below(40);
    let k = [(1, 1), (1, 1), (3, 3), (2, 3), (5, 5)][rng.below(5)];
    let dil = if rng.below(5) == 0 { (2, 1 + rng.below(2)) } else { (1, 1) };
    let s = (1 + rng.below(2), 1 + rng.below(2));
    let pads = [rng.below(3), rng.below(3), rng.below(3), rng.below(3)];
    let span = |k: usize, d: usize| d * (k - 1) + 1;
    let h = span(k.0, dil.0) + rng.below(8);
    let w = span(k.1, dil.1) + rng.below(8);
    geom(1 + rng.below(2), (h, w), (i_g * groups, o_g * groups), k, s, pads, dil, groups)
}

#[test]
fn generic_conv_matches_the_spec() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for (i, g) in edge_geoms().into_iter().enumerate() {
        for residual in [false, true] {
            let c = case(&mut rng, g, residual, i % 2 == 1);
            assert_eq!(c.run(Isa::Generic, None), c.naive(), "geometry {g:?} residual {residual}");
        }
    }
    for _ in 0..40 {
        let g = random_geom(&mut rng);
        let (residual, extreme) = (rng.below(2) == 0, rng.below(3) == 0);
        let c = case(&mut rng, g, residual, extreme);
        assert_eq!(c.run(Isa::Generic, None), c.naive(), "geometry {g:?}");
    }
}

#[test]
fn generic_conv_outputs_are_not_degenerate() {
    // Guards the test data itself: the typical qparams must spread outputs over many values
    // (an all-clamped output would make the comparisons above vacuous).
    let mut rng = Rng(99);
    let c = case(&mut rng, geom(1, (8, 8), (16, 32), (3, 3), (1, 1), [1; 4], (1, 1), 1), false, false);
    let c = ConvCase { qmin: -128, qmax: 127, ..c };
    let y = c.run(Isa::Generic, None);
    let distinct: std::collections::BTreeSet<i8> = y.iter().copied().collect();
    assert!(distinct.len() > 64, "only {} distinct outputs", distinct.len());
}

#[test]
fn simd_conv_is_byte_exact_and_thread_invariant() {
    let pools = pools();
    let mut rng = Rng(0xfeed_beef_0042);
    let mut geoms = edge_geoms();
    geoms.extend((0..120).map(|_| random_geom(&mut rng)));
    // A few bigger ones: several row tasks, K blocks of real layers.
    geoms.push(geom(1, (14, 14), (64, 40), (3, 3), (1, 1), [1; 4], (1, 1), 1));
    geoms.push(geom(1, (9, 9), (200, 48), (1, 1), (1, 1), [0; 4], (1, 1), 1));
    geoms.push(geom(2, (7, 7), (96, 33), (3, 3), (2, 2), [1; 4], (1, 1), 1));
    for (i, g) in geoms.into_iter().enumerate() {
        let c = case(&mut rng, g, i % 3 != 0, i % 4 == 1);
        let want = c.run(Isa::Generic, None);
        for p in &pools {
            assert_eq!(c.run(Isa::Generic, Some(&**p)), want, "generic, {} threads, {g:?}", p.threads());
        }
        for isa in simd_isas() {
            assert_eq!(c.run(isa, None), want, "{isa:?} vs generic, {g:?}");
            for p in &pools {
                assert_eq!(c.run(isa, Some(&**p)), want, "{isa:?}, {} threads, {g:?}", p.threads());
            }
        }
    }
}

#[test]
fn micro_kernels_agree_on_every_partial_tile() {
    micro_kernels_agree(7, |rng, k| qparams(rng, NR, k, true, true));
}

/// Every channel with `shift < 32` and multipliers small enough for the SIMD epilogues'
/// left-shift path (the residual layers' case): the tiles run with `lshift_ok` set.
#[test]
fn micro_kernels_agree_on_the_left_shift_requant_path() {
    micro_kernels_agree(8, |rng, k| {
        let qp: Vec<i32> = (0..NR)
            .flat_map(|_| {
                let shift = rng.range(1, 31);
                let m_acc = rng.range(0, 1i64 << (shift + 7).min(30)) as i32;
                let m_res = rng.range(0, 1i64 << (shift + 21).min(30)) as i32;
                let bias = rng.range(-(1 << 20), 1 << 20) as i32;
                [bias, m_acc, m_res, shift as i32]
            })
            .collect();
        assert!(requant_fits_lshift(&qp, k), "generator must stay inside the bound");
        qp
    });
}

/// The bound itself, at its edge: `t_max = s_max*m_acc + 255*m_res + 2^(shift-1)` must stay
/// below `2^(30 + shift)`.
#[test]
fn requant_left_shift_bound_is_exact_at_its_edge() {
    let (k, shift) = (4usize, 10u32);
    let s_max = (k * 128 * 128) as i64; // bias 0
    let limit = 1i64 << (30 + shift);
    let m_acc = ((limit - 1 - (1 << (shift - 1))) / s_max) as i32; // largest passing with m_res 0
    assert!(requant_fits_lshift(&[0, m_acc, 0, shift as i32], k));
    assert!(!requant_fits_lshift(&[0, m_acc + 1, 0, shift as i32], k));
    // The residual term: the remaining room, exactly.
    let room = limit - 1 - (1 << (shift - 1)) - s_max * i64::from(m_acc);
    let m_res = (room / 255) as i32;
    assert!(requant_fits_lshift(&[0, m_acc, m_res, shift as i32], k));
    assert!(!requant_fits_lshift(&[0, m_acc, m_res + 1, shift as i32], k));
    // The bias counts as part of the sum; shifts >= 32 always pass; bad rows never do.
    assert!(!requant_fits_lshift(&[1 << 20, m_acc, 0, shift as i32], k));
    assert!(requant_fits_lshift(&[i32::MIN, i32::MAX, i32::MAX, 32], 1 << 17));
    assert!(!requant_fits_lshift(&[0, 1, 0, 0], 1));
    assert!(!requant_fits_lshift(&[0, -1, 0, 40], 1));
}

/// Generic and SIMD micro-kernels on every `m x n` partial tile, for several `k4`, with
/// `lshift_ok` as [`requant_fits_lshift`] decides for the generated qparams.
fn micro_kernels_agree(seed: u64, mut gen_qp: impl FnMut(&mut Rng, usize) -> Vec<i32>) {
    let Some(isa) = simd_isas().pop() else { return };
    let simd = micro_kernel(isa);
    let mut rng = Rng(seed);
    for k4 in [1usize, 2, 3, 5, 17] {
        for m in 1..=MR {
            for n in 1..=NR {
                for half in 0..2 {
                    let a: Vec<i16> = (0..MR * 4 * k4).map(|_| i16::from(rng.i8())).collect();
                    // Any i8 weight, -128 included: the AVX2 kernel must be exact for it too.
                    let b: Vec<i8> = (0..64 * k4).map(|_| rng.i8()).collect();
                    let qp = gen_qp(&mut rng, 4 * k4);
                    let lshift_ok = requant_fits_lshift(&qp[..4 * n], 4 * k4);
                    let res: Vec<i8> = rng.i8s(MR * 11);
                    let with_res = rng.below(2) == 0;
                    let run = |kernel: resq::kernels::int8::MicroKernelI8| {
                        let mut y = vec![SENTINEL; MR * 13];
                        let t = MicroTileI8 {
                            m,
                            n,
                            k4,
                            a: core::array::from_fn(|i| a[4 * k4 * if i < m { i } else { 0 }..].as_ptr()),
                            b: b[half * 32..].as_ptr(),
                            qp: qp.as_ptr(),
                            y: y.as_mut_ptr(),
                            ldy: 13,
                            residual: if with_res { res.as_ptr() } else { core::ptr::null() },
                            ldr: 11,
                            z_res: -128,
                            z_y: 127,
                            qmin: -128,
                            qmax: 127,
                            lshift_ok,
                        };
                        // SAFETY: a rows hold 4*k4 i16, b holds 64*k4 bytes (32 read from half*32 at
                        // each 64*kk), qp 32 i32, y rows of 13 >= n bytes (6 rows), residual rows
                        // of 11 >= n bytes.
                        unsafe { kernel(&t) };
                        y
                    };
                    let want = run(gemm_i8i32_6x8__generic);
                    assert_eq!(run(simd), want, "m {m} n {n} k4 {k4} half {half}");
                    // Only the m x n tile was written.
                    for (idx, &v) in want.iter().enumerate() {
                        if idx / 13 >= m || idx % 13 >= n {
                            assert_eq!(v, SENTINEL, "wrote outside the tile at {idx}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn linear_matches_the_spec_on_every_tier() {
    let mut rng = Rng(31);
    let pools = pools();
    for &(m, k, n) in &[(1, 1, 1), (1, 2048, 37), (3, 13, 8), (7, 64, 33), (13, 5, 100)] {
        let x = rng.i8s(m * k);
        let w = rng.w8s(n * k);
        let qp = qparams(&mut rng, n, k, false, false);
        let (z_y, qmin, qmax) = (rng.zp(), -128, 127);
        let mut want = vec![0i8; m * n];
        for r in 0..m {
            for c in 0..n {
                let acc: i64 = (0..k).map(|j| x[r * k + j] as i64 * w[c * k + j] as i64).sum();
                let q = &qp[4 * c..4 * c + 4];
                let s = (acc as i32).wrapping_add(q[0]) as i64;
                want[r * n + c] = spec_requant(s, q[1] as i64, 0, 0, q[3] as i64, z_y as i64, qmin, qmax);
            }
        }
        let packed = pack_i8_n16k4(&w, n, 1, 1, k, 1);
        let ep = QEpilogue { qparams: &qp, residual: None, z_res: 0, z_y, qmin: qmin as i32, qmax: qmax as i32 };
        let mut isas = vec![Isa::Generic];
        isas.extend(simd_isas());
        for isa in isas {
            for pool in [None].into_iter().chain(pools.iter().map(|p| Some(&**p))) {
                let threads = pool.map_or(1, |p| p.threads());
                let mut scratch = vec![0.0f32; linear_i8_scratch_len(m, k, n, threads)];
                let mut y = vec![SENTINEL; m * n + TAIL];
                linear_i8(isa, m, k, n, &x, &packed, &ep, &mut y, &mut scratch, pool);
                assert_eq!(&y[..m * n], &want[..], "{isa:?} m {m} k {k} n {n} threads {threads}");
                assert!(y[m * n..].iter().all(|&v| v == SENTINEL));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pools, Add, Quantize, Dequantize.

#[allow(clippy::too_many_arguments)]
fn pool_shape(
    n: usize,
    hw: (usize, usize),
    c: usize,
    k: (usize, usize),
    s: usize,
    pads: [usize; 4],
    dil: usize,
    ceil: bool,
) -> Pool2dShape {
    let [pt, pl, pb, pr] = pads;
    let out = |i: usize, k: usize, a: usize, b: usize| {
        let span = i + a + b - dil * (k - 1) - 1;
        span / s + 1 + usize::from(ceil && span % s != 0)
    };
    Pool2dShape {
        n,
        in_h: hw.0,
        in_w: hw.1,
        c,
        out_h: out(hw.0, k.0, pt, pb),
        out_w: out(hw.1, k.1, pl, pr),
        kh: k.0,
        kw: k.1,
        stride_h: s,
        stride_w: s,
        pad_top: pt,
        pad_left: pl,
        pad_bottom: pb,
        pad_right: pr,
        dil_h: dil,
        dil_w: dil,
    }
}

/// `(max, avg(include_pad = false), avg(include_pad = true))` straight from the spec.
fn naive_pools(s: &Pool2dShape, x: &[i8], z_x: i32, mult: i32, shift: u32, z_y: i32) -> [Vec<i8>; 3] {
    let mut out = [vec![0i8; s.y_len()], vec![0i8; s.y_len()], vec![0i8; s.y_len()]];
    for b in 0..s.n {
        for oh in 0..s.out_h {
            for ow in 0..s.out_w {
                for ch in 0..s.c {
                    let (mut mx, mut sum, mut inside, mut padded) = (i64::MIN, 0i64, 0i64, 0i64);
                    for r in 0..s.kh {
                        for q in 0..s.kw {
                            let ih = (oh * s.stride_h + r * s.dil_h) as i64 - s.pad_top as i64;
                            let iw = (ow * s.stride_w + q * s.dil_w) as i64 - s.pad_left as i64;
                            let in_pad = ih < (s.in_h + s.pad_bottom) as i64 && iw < (s.in_w + s.pad_right) as i64;
                            padded += i64::from(in_pad && ih >= -(s.pad_top as i64) && iw >= -(s.pad_left as i64));
                            if ih < 0 || iw < 0 || ih >= s.in_h as i64 || iw >= s.in_w as i64 {
                                continue;
                            }
                            let v = x[((b * s.in_h + ih as usize) * s.in_w + iw as usize) * s.c + ch] as i64;
                            mx = mx.max(v);
                            sum += v - z_x as i64;
                            inside += 1;
                        }
                    }
                    let o = ((b * s.out_h + oh) * s.out_w + ow) * s.c + ch;
                    out[0][o] = mx as i8;
                    let v = spec_sra(sum * mult as i64, shift as i64);
                    for (slot, c) in [(1, inside), (2, padded)] {
                        let d = (2 * v + c).div_euclid(2 * c);
                        out[slot][o] = (z_y as i64 + d).clamp(-128, 127) as i8;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn pools_match_the_spec_on_every_tier() {
    let mut rng = Rng(5);
    let pools = pools();
    let shapes = [
        pool_shape(1, (9, 9), 5, (3, 3), 2, [1, 1, 1, 1], 1, false),
        pool_shape(2, (8, 7), 70, (2, 2), 2, [0; 4], 1, true),
        pool_shape(1, (6, 6), 3, (3, 2), 1, [1, 0, 2, 1], 2, false),
        pool_shape(1, (11, 11), 130, (3, 3), 2, [1, 1, 1, 1], 1, true),
        pool_shape(1, (5, 5), 16, (5, 5), 1, [2, 2, 2, 2], 1, false),
    ];
    let mut isas = vec![Isa::Generic];
    isas.extend(simd_isas());
    for s in &shapes {
        for _ in 0..3 {
            let x = rng.i8s(s.x_len());
            let (z_x, z_y) = (rng.zp(), rng.zp());
            let (mult, shift) = match rng.below(3) {
                0 => (i32::MAX, 31),
                1 => (rng.range(0, i32::MAX as i64) as i32, rng.range(1, 62) as u32),
                _ => (rng.range(1 << 29, i32::MAX as i64) as i32, rng.range(28, 33) as u32),
            };
            let want = naive_pools(s, &x, z_x, mult, shift, z_y);
            for &isa in &isas {
                for pool in [None].into_iter().chain(pools.iter().map(|p| Some(&**p))) {
                    let mut y = vec![SENTINEL; s.y_len() + TAIL];
                    maxpool_i8(isa, s, &x, &mut y, pool);
                    assert_eq!(&y[..s.y_len()], &want[0][..], "max {isa:?} {s:?}");
                    for (slot, inc) in [(1, false), (2, true)] {
                        avgpool_i8(isa, s, inc, &x, z_x, mult, shift, z_y, &mut y, pool);
                        assert_eq!(&y[..s.y_len()], &want[slot][..], "avg(include_pad {inc}) {isa:?} {s:?}");
                    }
                    assert!(y[s.y_len()..].iter().all(|&v| v == SENTINEL));
                }
            }
        }
    }
}

#[test]
fn global_avgpool_matches_the_spec_on_every_tier() {
    let mut rng = Rng(11);
    let mut isas = vec![Isa::Generic];
    isas.extend(simd_isas());
    for &(n, hw, c) in &[(1, 49, 2048), (2, 1, 3), (3, 64, 67), (1, 7, 1)] {
        let x = rng.i8s(n * hw * c);
        let (z_x, z_y) = (rng.zp(), rng.zp());
        let (mult, shift) = (rng.range(0, i32::MAX as i64) as i32, rng.range(20, 40) as u32);
        let mut want = vec![0i8; n * c];
        for b in 0..n {
            for ch in 0..c {
                let sum: i64 = (0..hw).map(|p| x[(b * hw + p) * c + ch] as i64 - z_x as i64).sum();
                let v = spec_sra(sum * mult as i64, shift as i64);
                let d = (2 * v + hw as i64).div_euclid(2 * hw as i64);
                want[b * c + ch] = (z_y as i64 + d).clamp(-128, 127) as i8;
            }
        }
        for &isa in &isas {
            let mut y = vec![SENTINEL; n * c + TAIL];
            global_avgpool_i8(isa, n, hw, c, &x, z_x, mult, shift, z_y, &mut y);
            assert_eq!(&y[..n * c], &want[..], "{isa:?} n {n} hw {hw} c {c}");
            assert!(y[n * c..].iter().all(|&v| v == SENTINEL));
        }
    }
}

#[test]
fn add_matches_the_spec_with_broadcasts_on_every_tier() {
    let mut rng = Rng(3);
    let mut isas = vec![Isa::Generic];
    isas.extend(simd_isas());
    // (y dims, a strides, b strides, a len, b len)
    type Case = (Vec<usize>, Vec<usize>, Vec<usize>, usize, usize);
    let cases: [Case; 5] = [
        (vec![2, 5, 5, 37], vec![925, 185, 37, 1], vec![925, 185, 37, 1], 1850, 1850),
        (vec![1, 3, 4, 9], vec![108, 36, 9, 1], vec![0, 0, 0, 1], 108, 9), // per-channel b
        (vec![1, 3, 4, 9], vec![0, 0, 0, 0], vec![108, 36, 9, 1], 1, 108), // scalar a
        (vec![2, 6, 3], vec![3, 0, 1], vec![0, 1, 0], 6, 6),               // both broadcast
        (vec![1, 2, 3, 4, 5, 7], vec![840, 420, 140, 35, 7, 1], vec![0, 420, 140, 35, 7, 1], 840, 840),
    ];
    for (dims, sa, sb, la, lb) in cases {
        for _ in 0..4 {
            let (a, b) = (rng.i8s(la), rng.i8s(lb));
            let (z_a, z_b, z_y) = (rng.zp(), rng.zp(), rng.zp());
            let shift = rng.range(1, 62) as u32;
            let m = |rng: &mut Rng| match rng.below(3) {
                0 => i32::MAX,
                1 => rng.range(0, 1) as i32,
                _ => rng.range(0, (1i64 << (shift - 1).min(31)) - 1) as i32,
            };
            let (m_a, m_b) = (m(&mut rng), m(&mut rng));
            let (qmin, qmax) = if rng.below(2) == 0 { (-128, 127) } else { (z_y, 127) };
            let total: usize = dims.iter().product();
            let mut want = vec![0i8; total];
            for (i, v) in want.iter_mut().enumerate() {
                let (mut rem, mut oa, mut ob) = (i, 0, 0);
                for d in (0..dims.len()).rev() {
                    let idx = rem % dims[d];
                    rem /= dims[d];
                    oa += idx * sa[d];
                    ob += idx * sb[d];
                }
                let (p, q) = (a[oa] as i64 - z_a as i64, b[ob] as i64 - z_b as i64);
                *v = spec_requant(p, m_a as i64, q, m_b as i64, shift as i64, z_y as i64, qmin as i64, qmax as i64);
            }
            for &isa in &isas {
                let mut y = vec![SENTINEL; total + TAIL];
                add_i8(isa, &dims, &a, &sa, z_a, m_a, &b, &sb, z_b, m_b, shift, z_y, qmin, qmax, &mut y);
                assert_eq!(&y[..total], &want[..], "{isa:?} dims {dims:?}");
                assert!(y[total..].iter().all(|&v| v == SENTINEL));
            }
        }
    }
}

#[test]
fn quantize_and_dequantize_match_the_spec_on_every_tier() {
    let mut rng = Rng(17);
    let mut isas = vec![Isa::Generic];
    isas.extend(simd_isas());
    let mut x: Vec<f32> = vec![
        0.0,
        -0.0,
        0.5,
        1.5,
        2.5,
        -0.5,
        -1.5,
        -2.5,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e30,
        -1e30,
        f32::MIN_POSITIVE,
        255.5,
        -256.5,
        127.49999,
    ];
    x.extend((0..1000).map(|_| (rng.next() as i32) as f32 / (1u64 << 24) as f32));
    for &(scale, z) in &[(1.0f32, 0), (0.5, -128), (0.0371, 127), (3.0e-3, 5), (1.0e-30, -7)] {
        let want: Vec<i8> = x
            .iter()
            .map(|&f| {
                let v = f / scale;
                let v = if v.is_nan() { 0.0 } else { v };
                let r = v.round_ties_even().clamp(-256.0, 256.0) as i32;
                (r + z).clamp(-128, 127) as i8
            })
            .collect();
        let q: Vec<i8> = rng.i8s(300);
        let want_f: Vec<f32> = q.iter().map(|&v| (i32::from(v) - z) as f32 * scale).collect();
        for &isa in &isas {
            let mut y = vec![SENTINEL; x.len() + TAIL];
            quantize_f32_i8(isa, &x, scale, z, &mut y);
            assert_eq!(&y[..x.len()], &want[..], "quantize {isa:?} scale {scale} z {z}");
            assert!(y[x.len()..].iter().all(|&v| v == SENTINEL));
            let mut f = vec![-7.0f32; q.len() + 3];
            dequantize_i8_f32(isa, &q, scale, z, &mut f);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&f[..q.len()]), bits(&want_f), "dequantize {isa:?}");
            assert_eq!(&f[q.len()..], &[-7.0; 3]);
        }
    }
    // Ties round to even, and the saturation points.
    let mut y = [0i8; 6];
    quantize_f32_i8(Isa::Generic, &[0.5, 1.5, 2.5, -2.5, 1000.0, f32::NAN], 1.0, 0, &mut y);
    assert_eq!(y, [0, 2, 2, -2, 127, 0]);
}
