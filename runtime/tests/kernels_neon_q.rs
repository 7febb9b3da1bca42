//! aarch64 NEON int8 pooling / Add / Quantize / Dequantize kernels and the NEON Winograd
//! F(4x4,3x3) transforms against their scalar twins, run under qemu-user as a Cortex-A72 and a
//! Cortex-A76 (the kernels use base NEON only, so both CPUs run the same code):
//! - int8 (`kernels::aarch64::qops_i8__neon`): byte-exact against `kernels::int8::generic`,
//!   both the row kernels called directly and the dispatched entry points (`Isa::Neon` vs
//!   `Isa::Generic`, with threads), over channel counts around the 16-lane registers and the
//!   64-channel blocks, windows with padding/dilation/stride (tap tables and the large-window
//!   path), more than 256 taps (the i16 partial-sum flush), -128 everywhere, extreme
//!   multipliers and shifts (the f64 division path and its scalar fallback), rounding ties,
//!   broadcasting shapes, and for Quantize NaN / ±inf / huge / subnormal inputs and exact
//!   ties of the round-half-to-even;
//! - Winograd (`kernels::aarch64::winograd_f43__neon` via `conv2d_winograd`): `Isa::Neon`
//!   against `Isa::Generic` and a naive f64 convolution (tolerance relative to each output's
//!   mass `sum |x*w| + |bias| + |residual|`, as `kernels_f32.rs`), output sizes around the 4x4
//!   tiles, channel tails of 1..3 lanes, interior and border tiles, bias / residual / every
//!   activation incl. NaN clamping, bit-identity across thread counts, no writes outside `y`.
//!
//! On x86 this file is an empty test binary.
#![cfg(target_arch = "aarch64")]

use resq::kernels::aarch64::qops_i8__neon::{
    add_row_i8__neon, dequantize_i8_f32__neon, global_avgpool_i8__neon, pool_row_i8__neon, quantize_f32_i8__neon,
};
use resq::kernels::gemm::{conv2d_winograd, conv2d_winograd_scratch_len, Act, ConvGeom, Epilogue};
use resq::kernels::int8::generic::{self, AddQ, GapQ};
use resq::kernels::int8::{
    add_i8, avgpool_i8, dequantize_i8_f32, global_avgpool_i8, maxpool_i8, quantize_f32_i8, Pool2dShape, PoolKindI8,
};
use resq::kernels::pack::pack_winograd_f43;
use resq::team::Team;
use resq::Isa;

const SENTINEL_I8: i8 = 0x5A;
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
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }
    /// Int8 data: uniform, or (1 in 4) biased to the extremes -128 / 127.
    fn bytes(&mut self, n: usize) -> Vec<i8> {
        let mode = self.below(4);
        (0..n)
            .map(|_| match mode {
                0 => {
                    if self.below(2) == 0 {
                        -128
                    } else {
                        self.pick(&[-128, 127, -127, 0])
                    }
                }
                _ => self.i8(),
            })
            .collect()
    }
}

/// The NEON tier the dispatched entry points are called with (every aarch64 CPU has it).
fn neon() -> Isa {
    assert!(Isa::Neon.is_supported(), "NEON must be supported on every aarch64 CPU");
    Isa::Neon
}

/// A zero point: the extremes often, otherwise random.
fn zero_point(rng: &mut Rng) -> i32 {
    match rng.below(4) {
        0 => -128,
        1 => 127,
        _ => rng.range(-128, 127) as i32,
    }
}

/// A `(mult, shift)` pair: extremes (0, 1, 2^31-1; shift 1 and 62), exact-value pairs that
/// make the division see exact ties, and random ones.
fn mult_shift(rng: &mut Rng) -> (i32, u32) {
    match rng.below(8) {
        0 => (i32::MAX, 1),
        1 => (i32::MAX, 62),
        2 => (0, rng.range(1, 62) as u32),
        3 => (1, 1),
        4 => {
            // v = sum exactly: rounding ties of the division by the tap count.
            let k = rng.range(0, 30) as u32;
            (1 << k, k.max(1) + u32::from(k == 0))
        }
        5 => (i32::MAX, rng.range(20, 40) as u32),
        _ => {
            let shift = rng.range(20, 40) as u32;
            (rng.range(1 << 18, (1 << 31) - 1) as i32 >> rng.below(8), shift)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn pool_shape(
    n: usize,
    hw: (usize, usize),
    c: usize,
    k: (usize, usize),
    s: (usize, usize),
    pads: [usize; 4],
    dil: (usize, usize),
) -> Option<Pool2dShape> {
    let (in_h, in_w) = hw;
    let [pt, pl, pb, pr] = pads;
    let span_h = dil.0 * (k.0 - 1) + 1;
    let span_w = dil.1 * (k.1 - 1) + 1;
    if in_h + pt + pb < span_h || in_w + pl + pr < span_w {
        return None;
    }
    Some(Pool2dShape {
        n,
        in_h,
        in_w,
        c,
        out_h: (in_h + pt + pb - span_h) / s.0 + 1,
        out_w: (in_w + pl + pr - span_w) / s.1 + 1,
        kh: k.0,
        kw: k.1,
        stride_h: s.0,
        stride_w: s.1,
        pad_top: pt,
        pad_left: pl,
        pad_bottom: pb,
        pad_right: pr,
        dil_h: dil.0,
        dil_w: dil.1,
    })
}

fn pool_cases(rng: &mut Rng) -> Vec<Pool2dShape> {
    let chans = [1usize, 3, 15, 16, 17, 31, 33, 48, 63, 64, 65, 80, 130];
    let mut v = Vec::new();
    for (i, &c) in chans.iter().enumerate() {
        for j in 0..4 {
            let k = (1 + rng.below(4), 1 + rng.below(4));
            let pads = core::array::from_fn(|_| rng.below(3));
            let hw = (1 + rng.below(8), 1 + rng.below(8));
            let s = (1 + rng.below(3), 1 + rng.below(3));
            let dil = if (i + j) % 3 == 0 { (1 + rng.below(2), 1 + rng.below(2)) } else { (1, 1) };
            if let Some(sh) = pool_shape(1 + (i + j) % 2, hw, c, k, s, pads, dil) {
                v.push(sh);
            }
        }
    }
    // Windows larger than the 64-entry tap table, and more than 256 taps inside the input
    // (the i16 partial sums are flushed); 3x3/2 with padding as ResNet's stem max pool.
    v.extend(pool_shape(1, (10, 9), 20, (9, 8), (1, 1), [1, 0, 2, 3], (1, 1)));
    v.extend(pool_shape(1, (18, 18), 17, (17, 17), (1, 1), [0, 0, 0, 0], (1, 1)));
    v.extend(pool_shape(1, (18, 18), 33, (17, 16), (1, 2), [1, 2, 0, 1], (1, 1)));
    v.extend(pool_shape(2, (15, 15), 64, (3, 3), (2, 2), [1, 1, 1, 1], (1, 1)));
    v.extend(pool_shape(1, (7, 7), 130, (7, 7), (1, 1), [0, 0, 0, 0], (1, 1)));
    v.extend(pool_shape(1, (5, 6), 5, (3, 3), (1, 1), [2, 2, 2, 2], (2, 2)));
    v
}

/// Runs every output row through the NEON row kernel and the generic one; compares bytes and
/// checks the row's bytes past `out_w * c` are untouched.
fn check_pool_rows(s: &Pool2dShape, kind: PoolKindI8, x: &[i8]) {
    let row = s.out_w * s.c;
    for r in 0..s.n * s.out_h {
        let mut want = vec![SENTINEL_I8; row + 17];
        let mut got = vec![SENTINEL_I8; row + 17];
        generic::pool_row_i8(s, kind, x, r, &mut want[..row]);
        pool_row_i8__neon(s, kind, x, r, &mut got);
        assert_eq!(got, want, "pool row {r} {kind:?} {s:?}");
    }
}

#[test]
fn neon_pools_match_generic_bytes() {
    let mut rng = Rng(0x51f15e5a11ce);
    let team = Team::new(3).unwrap();
    let cases = pool_cases(&mut rng);
    let mut n_checked = 0;
    for (i, s) in cases.iter().enumerate() {
        let x = rng.bytes(s.x_len());
        let (z_x, z_y) = (zero_point(&mut rng), zero_point(&mut rng));
        let (mult, shift) = mult_shift(&mut rng);
        let include_pad = i % 2 == 0;
        let kinds = [
            PoolKindI8::Max,
            PoolKindI8::Avg { include_pad, z_x, mult, shift, z_y },
            PoolKindI8::Avg { include_pad: !include_pad, z_x, mult: 1 << 16, shift: 16, z_y },
        ];
        for kind in kinds {
            check_pool_rows(s, kind, &x);
            n_checked += 1;
        }
        // The dispatched entry points (Neon with threads vs Generic) agree too.
        let y_len = s.y_len();
        let mut want = vec![SENTINEL_I8; y_len + 8];
        let mut got = vec![SENTINEL_I8; y_len + 8];
        maxpool_i8(Isa::Generic, s, &x, &mut want[..y_len], None::<&Team>);
        maxpool_i8(neon(), s, &x, &mut got[..y_len], Some(&team));
        assert_eq!(got, want, "maxpool_i8 {s:?}");
        avgpool_i8(Isa::Generic, s, include_pad, &x, z_x, mult, shift, z_y, &mut want[..y_len], None::<&Team>);
        avgpool_i8(neon(), s, include_pad, &x, z_x, mult, shift, z_y, &mut got[..y_len], Some(&team));
        assert_eq!(got, want, "avgpool_i8 {s:?} mult {mult} shift {shift}");
    }
    // A 70x70 window (4900 taps > 4112): with q - z = 255 and the largest multiplier,
    // |v| > 2^50 takes the scalar fallback of the f64 division.
    let s = pool_shape(1, (70, 70), 2, (70, 70), (1, 1), [0; 4], (1, 1)).unwrap();
    let x: Vec<i8> = (0..s.x_len()).map(|i| if i % 97 == 0 { 0 } else { -128 }).collect();
    for (mult, shift) in [(i32::MAX, 1), (i32::MAX, 3), (1 << 20, 20)] {
        let kind = PoolKindI8::Avg { include_pad: false, z_x: 127, mult, shift, z_y: -7 };
        check_pool_rows(&s, kind, &x);
    }
    // One hand-checked window: [1, 2, 3, 5] with z 0 and mult/2^shift = 1 (v = sum = 11):
    // average 11/4 = 2.75 -> 3, max 5; with z_x = 1, z_y = -2: (0+1+2+4)/4 = 1.75 -> 2, -2+2 = 0.
    let s = pool_shape(1, (2, 2), 1, (2, 2), (1, 1), [0; 4], (1, 1)).unwrap();
    let x = [1i8, 2, 3, 5];
    let mut y = [0i8; 1];
    avgpool_i8(neon(), &s, false, &x, 0, 1 << 20, 20, 0, &mut y, None::<&Team>);
    assert_eq!(y, [3]);
    avgpool_i8(neon(), &s, false, &x, 1, 1 << 20, 20, -2, &mut y, None::<&Team>);
    assert_eq!(y, [0]);
    maxpool_i8(neon(), &s, &x, &mut y, None::<&Team>);
    assert_eq!(y, [5]);
    eprintln!("pools: {} shapes, {n_checked} row-kernel comparisons", cases.len());
}

#[test]
fn neon_global_avgpool_matches_generic_bytes() {
    let mut rng = Rng(0x6a9);
    let hws = [1usize, 2, 7, 49, 64, 255, 256, 257, 300, 513];
    let chans = [1usize, 5, 16, 17, 64, 65, 100, 130];
    let mut cases = 0;
    for (i, &hw) in hws.iter().enumerate() {
        for (j, &c) in chans.iter().enumerate() {
            let n = 1 + (i + j) % 2;
            // All -128 (the i16 partial sums reach -32768 exactly at 256 taps), all 127, mixed.
            let x: Vec<i8> = match (i + j) % 4 {
                0 => vec![-128; n * hw * c],
                1 => vec![127; n * hw * c],
                _ => rng.bytes(n * hw * c),
            };
            let (z_x, z_y) = (zero_point(&mut rng), zero_point(&mut rng));
            for (mult, shift) in [mult_shift(&mut rng), mult_shift(&mut rng), (1 << 24, 24)] {
                let q = GapQ { z_x, mult, shift, z_y };
                let mut want = vec![SENTINEL_I8; n * c + 9];
                let mut got = vec![SENTINEL_I8; n * c + 9];
                generic::global_avgpool_i8(n, hw, c, &x, &q, &mut want[..n * c]);
                global_avgpool_i8__neon(n, hw, c, &x, &q, &mut got);
                assert_eq!(got, want, "global avgpool n {n} hw {hw} c {c} {q:?}");
                got.fill(SENTINEL_I8);
                global_avgpool_i8(neon(), n, hw, c, &x, z_x, mult, shift, z_y, &mut got[..n * c]);
                assert_eq!(got, want, "dispatched global avgpool n {n} hw {hw} c {c} {q:?}");
                cases += 1;
            }
        }
    }
    // More than 4112 taps of |q - z| = 255 with the largest multiplier: |v| > 2^50, the
    // scalar fallback of the f64 division (and the i32 sums far beyond the i16 range).
    for (hw, c, n) in [(5000usize, 3usize, 1usize), (4500, 17, 2)] {
        let x = vec![-128i8; n * hw * c];
        for (z_x, mult, shift, z_y) in [(127, i32::MAX, 1, 0), (127, i32::MAX, 2, -128), (-128, i32::MAX, 1, 5)] {
            let q = GapQ { z_x, mult, shift, z_y };
            let mut want = vec![SENTINEL_I8; n * c];
            let mut got = vec![SENTINEL_I8; n * c];
            generic::global_avgpool_i8(n, hw, c, &x, &q, &mut want);
            global_avgpool_i8__neon(n, hw, c, &x, &q, &mut got);
            assert_eq!(got, want, "global avgpool, huge v: hw {hw} c {c} {q:?}");
        }
    }
    // Hand-checked: 300 pixels of -128 with z_x = 127 (sum = -76500), mult/2^shift = 1,
    // z_y = 100: 100 + (-255) = -155 -> -128; with z_x = -128, z_y = 3: 3.
    let x = vec![-128i8; 300];
    let mut y = [0i8; 1];
    global_avgpool_i8(neon(), 1, 300, 1, &x, 127, 1 << 10, 10, 100, &mut y);
    assert_eq!(y, [-128]);
    global_avgpool_i8(neon(), 1, 300, 1, &x, -128, 1 << 10, 10, 3, &mut y);
    assert_eq!(y, [3]);
    eprintln!("global avgpool: {cases} cases");
}

// ---------------------------------------------------------------------------------------------
// Add
// ---------------------------------------------------------------------------------------------

fn add_q(rng: &mut Rng) -> AddQ {
    let (m_a, shift) = mult_shift(rng);
    let m_b = match rng.below(4) {
        0 => i32::MAX,
        1 => 0,
        _ => rng.range(0, i32::MAX as i64) as i32 >> rng.below(12),
    };
    let (mut qmin, mut qmax) = (-128, 127);
    if rng.below(3) == 0 {
        let (a, b) = (rng.range(-128, 127) as i32, rng.range(-128, 127) as i32);
        (qmin, qmax) = (a.min(b), a.max(b));
    }
    AddQ { z_a: zero_point(rng), m_a, z_b: zero_point(rng), m_b, shift, z_y: zero_point(rng), qmin, qmax }
}

#[test]
fn neon_add_rows_match_generic_bytes() {
    let mut rng = Rng(0xadd);
    let strides = [(1usize, 1usize), (1, 0), (0, 1), (0, 0), (2, 1), (1, 3)];
    let mut cases = 0;
    for len in (0..=70).chain([127, 128, 129, 255, 1000]) {
        for &(sa, sb) in &strides {
            let q = add_q(&mut rng);
            let a = rng.bytes((len.max(1) - 1) * sa + 1);
            let b = rng.bytes((len.max(1) - 1) * sb + 1);
            let mut want = vec![SENTINEL_I8; len + 5];
            let mut got = vec![SENTINEL_I8; len + 5];
            generic::add_row_i8(&a, sa, &b, sb, &q, &mut want[..len]);
            add_row_i8__neon(&a, sa, &b, sb, &q, &mut got[..len]);
            assert_eq!(got, want, "add row len {len} strides {sa} {sb} {q:?}");
            cases += 1;
        }
    }
    // Every (a, b) byte pair once, contiguous, under extreme and ordinary parameters.
    let a: Vec<i8> = (0..65536).map(|i| (i & 255) as u8 as i8).collect();
    let b: Vec<i8> = (0..65536).map(|i| (i >> 8) as u8 as i8).collect();
    let params = [
        AddQ { z_a: -128, m_a: i32::MAX, z_b: 127, m_b: i32::MAX, shift: 1, z_y: 0, qmin: -128, qmax: 127 },
        AddQ { z_a: 127, m_a: i32::MAX, z_b: -128, m_b: i32::MAX, shift: 62, z_y: -128, qmin: -128, qmax: 127 },
        AddQ { z_a: 3, m_a: 1 << 29, z_b: -7, m_b: 1 << 29, shift: 30, z_y: 5, qmin: -128, qmax: 127 },
        AddQ { z_a: 0, m_a: 1 << 30, z_b: 0, m_b: 1 << 30, shift: 31, z_y: 0, qmin: 0, qmax: 127 },
        AddQ { z_a: -20, m_a: 1_234_567_890, z_b: 11, m_b: 987_654_321, shift: 37, z_y: -3, qmin: -100, qmax: 90 },
    ];
    for q in params {
        let mut want = vec![0i8; a.len()];
        let mut got = vec![0i8; a.len()];
        generic::add_row_i8(&a, 1, &b, 1, &q, &mut want);
        add_row_i8__neon(&a, 1, &b, 1, &q, &mut got);
        assert_eq!(got, want, "all byte pairs {q:?}");
    }
    // Hand-checked ties: (a - 0) * 2^30 + 0 with shift 31 is a/2, rounded half up: 3 -> 2,
    // -3 -> -1, -1 -> 0; then + z_y 1 and the ReLU-like clamp qmin 1.
    let q = AddQ { z_a: 0, m_a: 1 << 30, z_b: 0, m_b: 0, shift: 31, z_y: 1, qmin: 1, qmax: 127 };
    let mut y = [0i8; 4];
    add_row_i8__neon(&[3, -3, -1, 100], 1, &[0], 0, &q, &mut y);
    assert_eq!(y, [3, 1, 1, 51]);
    eprintln!("add rows: {cases} cases");
}

/// Row-major strides of `dims`, with 0 on the axes where `bdims` is 1 (broadcast).
fn bstrides(bdims: &[usize]) -> Vec<usize> {
    let mut st = vec![0; bdims.len()];
    let mut acc = 1;
    for d in (0..bdims.len()).rev() {
        st[d] = if bdims[d] == 1 { 0 } else { acc };
        acc *= bdims[d];
    }
    st
}

#[test]
fn neon_add_broadcasting_matches_generic_bytes() {
    let mut rng = Rng(0xb40adca57);
    let mut cases = 0;
    for _ in 0..120 {
        let rank = 1 + rng.below(4);
        let dims: Vec<usize> = (0..rank).map(|_| rng.pick(&[1, 2, 3, 5, 16, 17, 33])).collect();
        // Each operand keeps or broadcasts each axis (including the innermost one).
        let adims: Vec<usize> = dims.iter().map(|&d| if rng.below(3) == 0 { 1 } else { d }).collect();
        let bdims: Vec<usize> = dims.iter().map(|&d| if rng.below(3) == 0 { 1 } else { d }).collect();
        let (sa, sb) = (bstrides(&adims), bstrides(&bdims));
        let a = rng.bytes(adims.iter().product());
        let b = rng.bytes(bdims.iter().product());
        let q = add_q(&mut rng);
        let total: usize = dims.iter().product();
        let mut want = vec![SENTINEL_I8; total + 3];
        let mut got = vec![SENTINEL_I8; total + 3];
        let run = |isa: Isa, y: &mut [i8]| {
            add_i8(isa, &dims, &a, &sa, q.z_a, q.m_a, &b, &sb, q.z_b, q.m_b, q.shift, q.z_y, q.qmin, q.qmax, y)
        };
        run(Isa::Generic, &mut want[..total]);
        run(neon(), &mut got[..total]);
        assert_eq!(got, want, "add_i8 dims {dims:?} a {adims:?} b {bdims:?} {q:?}");
        cases += 1;
    }
    // Hand-checked broadcast of a per-channel vector over [2, 3]: b = [10, 20, 30],
    // y = a + b with unit multipliers (2^20 / 2^20).
    let (a, b) = ([1i8, 2, 3, 4, 5, 6], [10i8, 20, 30]);
    let mut y = [0i8; 6];
    add_i8(neon(), &[2, 3], &a, &[3, 1], 0, 1 << 20, &b, &[0, 1], 0, 1 << 20, 20, 0, -128, 127, &mut y);
    assert_eq!(y, [11, 22, 33, 14, 25, 36]);
    eprintln!("add broadcasting: {cases} cases");
}

// ---------------------------------------------------------------------------------------------
// Quantize / Dequantize
// ---------------------------------------------------------------------------------------------

#[test]
fn neon_quantize_matches_generic_bytes() {
    let mut rng = Rng(0x9a7);
    let specials = [
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        1e-45,
        -1e-45,
        1e30,
        -1e30,
        255.5,
        -256.5,
        256.5,
        127.5,
        -128.5,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
    ];
    let scales =
        [1.0f32, 0.5, 0.0078125, 0.013_7, 3.7, 1e-38, 1e-45, 1e38, f32::MAX, 0.0, -0.25, f32::INFINITY, f32::NAN];
    let mut cases = 0;
    for (len, scale) in (0..=40).chain([63, 64, 65, 1000]).flat_map(|l| scales.iter().map(move |&s| (l, s))) {
        let z = zero_point(&mut rng);
        let x: Vec<f32> = (0..len)
            .map(|_| match rng.below(5) {
                0 => rng.pick(&specials),
                // Exact ties k + 1/2 of x / scale for power-of-two scales.
                1 => (rng.range(-300, 300) as f32 + 0.5) * scale,
                2 => rng.f() * 300.0 * scale,
                3 => rng.f() * 1e6,
                _ => rng.f() * 2.0,
            })
            .collect();
        let mut want = vec![SENTINEL_I8; len + 7];
        let mut got = vec![SENTINEL_I8; len + 7];
        generic::quantize_f32_i8(&x, scale, z, &mut want[..len]);
        quantize_f32_i8__neon(&x, scale, z, &mut got);
        assert_eq!(got, want, "quantize len {len} scale {scale} z {z}: x {x:?}");
        got.fill(SENTINEL_I8);
        quantize_f32_i8(neon(), &x, scale, z, &mut got);
        assert_eq!(got, want, "dispatched quantize len {len} scale {scale} z {z}");
        cases += 1;
    }
    // Hand-checked: ties to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2), NaN -> 0 + z,
    // +inf -> 256 + z clamped, -1e30 -> -256 + z clamped, 130 + (-3) = 127.
    let x = [0.5f32, 1.5, 2.5, -2.5, f32::NAN, f32::INFINITY, -1e30, 130.0, -125.0];
    let mut y = [0i8; 9];
    quantize_f32_i8(neon(), &x, 1.0, -3, &mut y);
    assert_eq!(y, [-3, -1, -1, -5, -3, 127, -128, 127, -128]);
    eprintln!("quantize: {cases} cases");
}

#[test]
fn neon_dequantize_matches_generic_bits() {
    let mut rng = Rng(0xde9);
    let scales = [1.0f32, 0.0078125, 0.013_7, 1e-38, 1e-45, 3.4e38, 0.0, -0.5, f32::INFINITY, f32::NAN];
    let all: Vec<i8> = (0..=255u8).map(|v| v as i8).collect();
    let mut cases = 0;
    for len in (0..=40).chain([63, 64, 65, 256, 1000]) {
        let x: Vec<i8> = if len == 256 { all.clone() } else { rng.bytes(len) };
        for &scale in &scales {
            let z = zero_point(&mut rng);
            let mut want = vec![SENTINEL; len + 5];
            let mut got = vec![SENTINEL; len + 5];
            generic::dequantize_i8_f32(&x, scale, z, &mut want[..len]);
            dequantize_i8_f32__neon(&x, scale, z, &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "dequantize len {len} scale {scale} z {z}");
            got.fill(SENTINEL);
            dequantize_i8_f32(neon(), &x, scale, z, &mut got[..len]);
            assert_eq!(bits(&got), bits(&want), "dispatched dequantize len {len} scale {scale} z {z}");
            cases += 1;
        }
    }
    let mut y = [0.0f32; 3];
    dequantize_i8_f32(neon(), &[-128, 127, 5], 0.5, -128, &mut y);
    assert_eq!(y, [0.0, 127.5, 66.5]);
    eprintln!("dequantize: {cases} cases");
}

// ---------------------------------------------------------------------------------------------
// Winograd F(4x4,3x3) transforms
// ---------------------------------------------------------------------------------------------

/// A 3x3 stride-1 convolution geometry with pads `[top, left, bottom, right]`.
fn wgeom(n: usize, hw: (usize, usize), c: (usize, usize), pads: [usize; 4]) -> ConvGeom {
    let [pt, pl, pb, pr] = pads;
    ConvGeom {
        n,
        in_h: hw.0,
        in_w: hw.1,
        in_c: c.0,
        out_h: hw.0 + pt + pb - 2,
        out_w: hw.1 + pl + pr - 2,
        out_c: c.1,
        kh: 3,
        kw: 3,
        stride_h: 1,
        stride_w: 1,
        pad_top: pt,
        pad_left: pl,
        dil_h: 1,
        dil_w: 1,
        groups: 1,
    }
}

struct WCase {
    g: ConvGeom,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Option<Vec<f32>>,
    res: Option<Vec<f32>>,
    act: Act,
}

impl WCase {
    fn new(rng: &mut Rng, g: ConvGeom, bias: bool, res: bool, act: Act) -> WCase {
        let mut vec = |n: usize| (0..n).map(|_| rng.f()).collect::<Vec<f32>>();
        let x = vec(g.x_len());
        let w = vec(g.out_c * 9 * g.in_c);
        let bias = bias.then(|| vec(g.out_c));
        let res = res.then(|| vec(g.y_len()));
        WCase { g, x, w, bias, res, act }
    }

    /// Runs `conv2d_winograd`; checks nothing past y's end was written.
    fn run(&self, isa: Isa, pool: Option<&Team>) -> Vec<f32> {
        let g = &self.g;
        let threads = pool.map_or(1, |p| p.threads());
        let u = pack_winograd_f43(&self.w, g.out_c, g.in_c);
        let y_len = g.y_len();
        let mut y = vec![SENTINEL; y_len + 16];
        let ep = Epilogue { bias: self.bias.as_deref(), residual: self.res.as_deref(), act: self.act };
        let mut s = vec![0.0; conv2d_winograd_scratch_len(g, threads)];
        conv2d_winograd(isa, g, &self.x, &u, &ep, &mut y[..y_len], &mut s, pool);
        assert!(y[y_len..].iter().all(|&v| v == SENTINEL), "{isa}: winograd wrote past the output ({g:?})");
        y.truncate(y_len);
        y
    }

    /// Naive NHWC 3x3 convolution in f64 (OHWI weights): (value, mass) per output.
    fn reference(&self) -> (Vec<f64>, Vec<f64>) {
        let g = &self.g;
        let (mut val, mut mass) = (vec![0.0f64; g.y_len()], vec![0.0f64; g.y_len()]);
        for b in 0..g.n {
            for oh in 0..g.out_h {
                for ow in 0..g.out_w {
                    for oc in 0..g.out_c {
                        let (mut s, mut m) = (0.0f64, 0.0f64);
                        for r in 0..3 {
                            for q in 0..3 {
                                let ih = (oh + r) as isize - g.pad_top as isize;
                                let iw = (ow + q) as isize - g.pad_left as isize;
                                if ih < 0 || iw < 0 || ih >= g.in_h as isize || iw >= g.in_w as isize {
                                    continue;
                                }
                                let xo = ((b * g.in_h + ih as usize) * g.in_w + iw as usize) * g.in_c;
                                for ci in 0..g.in_c {
                                    let p =
                                        self.x[xo + ci] as f64 * self.w[((oc * 3 + r) * 3 + q) * g.in_c + ci] as f64;
                                    s += p;
                                    m += p.abs();
                                }
                            }
                        }
                        let o = ((b * g.out_h + oh) * g.out_w + ow) * g.out_c + oc;
                        if let Some(bs) = &self.bias {
                            s += bs[oc] as f64;
                            m += (bs[oc] as f64).abs();
                        }
                        if let Some(rs) = &self.res {
                            s += rs[o] as f64;
                            m += (rs[o] as f64).abs();
                        }
                        val[o] = match self.act {
                            Act::None => s,
                            Act::Relu => s.max(0.0),
                            Act::Clip(lo, hi) => s.max(lo as f64).min(hi as f64),
                        };
                        mass[o] = m;
                    }
                }
            }
        }
        (val, mass)
    }
}

/// Max of |got - want| / mass; panics with context above `tol`.
fn check_close(what: &str, got: &[f32], want: &(Vec<f64>, Vec<f64>), tol: f64) -> f64 {
    assert_eq!(got.len(), want.0.len(), "{what}: length");
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

fn wino_cases(rng: &mut Rng) -> Vec<WCase> {
    let acts = [Act::None, Act::Relu, Act::Clip(-0.25, 0.5)];
    let chans = [1usize, 2, 3, 4, 5, 7, 8, 13, 17];
    let sizes = [(3, 3), (4, 4), (5, 7), (6, 6), (9, 13), (1, 4), (11, 6), (8, 10)];
    let pads = [[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 2, 1], [2, 2, 0, 1], [0, 1, 1, 0]];
    let mut cases = Vec::new();
    let mut i = 0;
    for &ci in &chans {
        for &co in &[1usize, 3, 16, 17, 33] {
            i += 1;
            let hw = sizes[i % sizes.len()];
            let p = pads[(i / 2) % pads.len()];
            if hw.0 + p[0] + p[2] < 3 || hw.1 + p[1] + p[3] < 3 {
                continue;
            }
            let g = wgeom(1 + i % 2, hw, (ci, co), p);
            cases.push(WCase::new(rng, g, i % 2 == 0, i % 3 != 0, acts[i % 3]));
        }
    }
    // Interior tiles (the unchecked full-vector loads) next to border ones, 4-lane channel
    // blocks with tails of 1..3, several tile blocks and output-channel chunks.
    cases.push(WCase::new(rng, wgeom(1, (21, 18), (19, 21), [1, 2, 0, 1]), true, true, Act::Relu));
    cases.push(WCase::new(rng, wgeom(1, (16, 16), (16, 16), [1; 4]), true, true, Act::Relu));
    cases.push(WCase::new(rng, wgeom(2, (14, 13), (12, 72), [0, 1, 1, 0]), false, true, Act::None));
    cases.push(WCase::new(rng, wgeom(1, (26, 25), (6, 8), [1; 4]), true, false, Act::Clip(-0.5, 0.25)));
    cases
}

#[test]
fn neon_winograd_matches_generic_and_naive() {
    let mut rng = Rng(0x3a3f);
    let team = Team::new(3).unwrap();
    let cases = wino_cases(&mut rng);
    let (mut worst_neon, mut worst_generic) = (0.0f64, 0.0f64);
    for c in &cases {
        let want = c.reference();
        let yg = c.run(Isa::Generic, None);
        let yn = c.run(neon(), None);
        worst_generic = worst_generic.max(check_close(&format!("generic winograd {:?}", c.g), &yg, &want, 1e-4));
        worst_neon = worst_neon.max(check_close(&format!("neon winograd {:?}", c.g), &yn, &want, 1e-4));
        // NEON against its scalar twin directly: both within a few ulps of the output's mass.
        let twin = (yg.iter().map(|&v| v as f64).collect::<Vec<_>>(), want.1.clone());
        check_close(&format!("neon vs generic winograd {:?}", c.g), &yn, &twin, 1e-4);
        // Thread splits never change an element.
        let yt = c.run(neon(), Some(&team));
        assert!(
            yt.iter().zip(&yn).all(|(a, b)| a.to_bits() == b.to_bits()),
            "neon winograd differs between 1 and 3 threads ({:?})",
            c.g
        );
    }
    eprintln!("winograd: {} cases, worst relative error neon {worst_neon:e}, generic {worst_generic:e}", cases.len());
}

#[test]
fn neon_winograd_f16_weights_match_generic() {
    // The transforms hold no weights: with f16 WinogradF43N16 panels (widened in the GEMM)
    // the NEON and generic tiers still agree within the f32 tolerance.
    let mut rng = Rng(0xf16);
    let cases = [
        WCase::new(&mut rng, wgeom(1, (9, 10), (5, 17), [1; 4]), true, true, Act::Relu),
        WCase::new(&mut rng, wgeom(2, (13, 6), (16, 3), [0, 1, 2, 0]), false, true, Act::None),
        WCase::new(&mut rng, wgeom(1, (21, 18), (19, 21), [1, 2, 0, 1]), true, false, Act::Clip(-0.25, 0.5)),
    ];
    for c in &cases {
        let g = &c.g;
        let u: Vec<half::f16> =
            pack_winograd_f43(&c.w, g.out_c, g.in_c).iter().map(|&v| half::f16::from_f32(v)).collect();
        let ep = Epilogue { bias: c.bias.as_deref(), residual: c.res.as_deref(), act: c.act };
        let run = |isa: Isa| {
            let mut y = vec![SENTINEL; g.y_len() + 16];
            let mut s = vec![0.0; conv2d_winograd_scratch_len(g, 1)];
            conv2d_winograd(isa, g, &c.x, &u, &ep, &mut y[..g.y_len()], &mut s, None::<&Team>);
            assert!(y[g.y_len()..].iter().all(|&v| v == SENTINEL), "{isa}: f16 winograd wrote past y");
            y.truncate(g.y_len());
            y
        };
        let (yg, yn) = (run(Isa::Generic), run(neon()));
        let mass = c.reference().1;
        let twin = (yg.iter().map(|&v| v as f64).collect::<Vec<_>>(), mass);
        check_close(&format!("f16 neon vs generic winograd {g:?}"), &yn, &twin, 1e-4);
    }
}

#[test]
fn neon_winograd_clamps_nan_like_generic() {
    // A NaN input turns its tiles' outputs NaN; with ReLU / Clip the generic body's
    // `max(lo).min(hi)` maps NaN to `lo`, and so must the NEON epilogue (fmaxnm/fminnm).
    let mut rng = Rng(77);
    let mut c = WCase::new(&mut rng, wgeom(1, (6, 7), (5, 6), [1; 4]), true, true, Act::None);
    c.x[3 * c.g.in_c + 2] = f32::NAN;
    let yg = c.run(Isa::Generic, None);
    let yn = c.run(neon(), None);
    let nan: Vec<bool> = yg.iter().map(|v| v.is_nan()).collect();
    assert!(nan.iter().any(|&b| b) && !nan.iter().all(|&b| b), "the NaN must reach some outputs, not all");
    assert_eq!(yn.iter().map(|v| v.is_nan()).collect::<Vec<_>>(), nan, "NaN positions differ");
    for act in [Act::Relu, Act::Clip(-0.25, 0.5)] {
        c.act = act;
        let lo = if let Act::Clip(lo, _) = act { lo } else { 0.0 };
        let (yg, yn) = (c.run(Isa::Generic, None), c.run(neon(), None));
        for (i, ((&g, &n), &was_nan)) in yg.iter().zip(&yn).zip(&nan).enumerate() {
            if was_nan {
                assert!(g == lo && n == lo, "{act:?}: element {i}: NaN clamps to {lo}: generic {g}, neon {n}");
            } else {
                assert!((g - n).abs() <= 1e-4, "{act:?}: element {i}: generic {g}, neon {n}");
            }
        }
    }
}
