//! Int8 ops end to end through a file: a small int8 graph (Quantize, int8 convs with fused
//! residual and ReLU, max/avg/global pooling, Add, Linear, Dequantize) built with the
//! FileBuilder, run at every ISA tier and thread count, and compared byte for byte with a
//! naive reference written straight from the numerics in `docs/FORMAT.md` (i64 everywhere).

#![allow(clippy::too_many_arguments)] // the reference functions mirror the spec's argument lists

mod common;
use common::*;
use resq::format::*;
use resq::kernels::int8::pack::pack_i8_n16k4;
use resq::{Isa, Model, Options};

/// Spec helpers, restated independently of the runtime's.
fn sra_round(t: i64, shift: u32) -> i64 {
    (t + (1i64 << (shift - 1))) >> shift
}
fn div_round(v: i64, c: i64) -> i64 {
    (2 * v + c).div_euclid(2 * c)
}
fn requant(s: i64, m_acc: i64, rq: i64, m_res: i64, shift: u32, z_y: i64, qmin: i64, qmax: i64) -> i8 {
    (sra_round(s * m_acc + rq * m_res, shift) + z_y).clamp(qmin, qmax) as i8
}
fn quantize(x: f32, s: f32, z: i32) -> i8 {
    let v = x / s;
    let v = if v.is_nan() { 0.0 } else { v };
    ((v.round_ties_even().clamp(-256.0, 256.0) as i32) + z).clamp(-128, 127) as i8
}

#[derive(Clone, Copy)]
struct Q {
    s: f32,
    z: i32,
}

struct ConvW {
    o: usize,
    k: usize,
    ig: usize,
    groups: usize,
    w: Vec<i8>,   // OHWI
    qp: Vec<i32>, // [o][4]
}

fn rand_conv(r: &mut Rng, o: usize, k: usize, ig: usize, groups: usize, residual: bool) -> ConvW {
    let n = o * k * k * ig;
    let w: Vec<i8> = (0..n).map(|_| (r.below(255) as i32 - 127) as i8).collect();
    let mut qp = Vec::new();
    // Real multipliers that map the accumulator's spread (~sqrt(K) * 74^2) onto ~100 steps,
    // and a residual multiplier around 0.3..1, with the spec's shift choice.
    let kk = (k * k * ig) as f64;
    for _ in 0..o {
        let m_acc_real = 100.0 / (kk.sqrt() * 74.0 * 74.0) * (0.5 + r.f32().abs() as f64);
        let m_res_real = if residual { 0.3 + 0.7 * r.f32().abs() as f64 } else { 0.0 };
        let big = m_acc_real.max(m_res_real);
        let shift = ((31.0 - big.log2()).floor() as i32 - 1).clamp(1, 62);
        let m = |v: f64| (v * 2f64.powi(shift)).round() as i32;
        let bias = r.below(20001) as i32 - 10000;
        qp.extend_from_slice(&[bias, m(m_acc_real), m(m_res_real), shift]);
    }
    ConvW { o, k, ig, groups, w, qp }
}

/// Naive NHWC int8 conv, pad k/2, stride 1.
fn ref_conv(
    x: &[i8],
    h: usize,
    w: usize,
    c: usize,
    zx: i32,
    cw: &ConvW,
    res: Option<(&[i8], i32)>,
    zy: i32,
    qmin: i32,
) -> Vec<i8> {
    let (o, k, ig, g) = (cw.o, cw.k, cw.ig, cw.groups);
    let og = o / g;
    let pad = (k / 2) as i64;
    let mut y = vec![0i8; h * w * o];
    for oy in 0..h {
        for ox in 0..w {
            for oc in 0..o {
                let gi = oc / og;
                let mut acc = 0i64;
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (oy as i64 + ky as i64 - pad, ox as i64 + kx as i64 - pad);
                        for i in 0..ig {
                            let xv = if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                zx as i64
                            } else {
                                x[((iy as usize) * w + ix as usize) * c + gi * ig + i] as i64
                            };
                            acc += xv * cw.w[((oc * k + ky) * k + kx) * ig + i] as i64;
                        }
                    }
                }
                let q = &cw.qp[oc * 4..oc * 4 + 4];
                let s = (acc as i32).wrapping_add(q[0]) as i64;
                let idx = (oy * w + ox) * o + oc;
                let rq = res.map_or(0, |(r, zr)| r[idx] as i64 - zr as i64);
                y[idx] = requant(s, q[1] as i64, rq, q[2] as i64, q[3] as u32, zy as i64, qmin as i64, 127);
            }
        }
    }
    y
}

struct Case {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    groups: usize,
    n_out: usize,
    qx: Q,
    qa: Q,
    qb: Q,
    qv: Q,
    qs: Q,
    qg: Q,
    ql: Q,
    conv_a: ConvW,
    conv_b: ConvW,
    avg: (i32, u32),
    add: (i32, i32, u32),
    gap: (i32, u32),
    fc: Vec<i8>,
    fc_qp: Vec<i32>,
}

fn case(seed: u64) -> Case {
    let mut r = Rng::new(seed);
    let groups = r.pick(&[1, 2, 3]);
    let c = groups * (1 + r.below(6));
    let o = groups * (1 + r.below(7));
    let (h, w) = (3 + r.below(6), 3 + r.below(6));
    let n_out = 1 + r.below(20);
    let q = |r: &mut Rng, s: f32| Q { s: s * (0.5 + r.f32().abs()), z: r.below(256) as i32 - 128 };
    let qx = q(&mut r, 0.02);
    let qa = q(&mut r, 0.05);
    let qb = q(&mut r, 0.05);
    let conv_a = rand_conv(&mut r, o, 3, c / groups, groups, false);
    let conv_b = rand_conv(&mut r, o, 1, c, 1, true);
    let fc: Vec<i8> = (0..n_out * o).map(|_| (r.below(255) as i32 - 127) as i8).collect();
    let mut fc_qp = Vec::new();
    let qg = q(&mut r, 0.05);
    for n in 0..n_out {
        // ~100 steps for an accumulator spread of sqrt(o) * 60 * 74.
        let m = 100.0 / ((o as f64).sqrt() * 60.0 * 74.0);
        let shift = (30.0 - m.log2()).floor() as i32;
        // The input zero point folded into the bias, as the converter does.
        let wsum: i32 = fc[n * o..(n + 1) * o].iter().map(|&v| v as i32).sum();
        let bias = r.below(2001) as i32 - 1000 - qg.z * wsum;
        fc_qp.extend_from_slice(&[bias, (m * 2f64.powi(shift)).round() as i32, 0, shift]);
    }
    Case {
        c,
        h,
        w,
        o,
        groups,
        n_out,
        qx,
        qa,
        qb,
        qv: q(&mut r, 0.05),
        qs: q(&mut r, 0.08),
        qg,
        ql: q(&mut r, 0.1),
        conv_a,
        conv_b,
        avg: ((1 << 30) + r.below(1 << 30) as i32, 30 + r.below(2) as u32),
        add: ((1 << 29) + r.below(1 << 30) as i32, (1 << 29) + r.below(1 << 30) as i32, 31),
        gap: ((1 << 30) + r.below(1 << 30) as i32, 31),
        fc,
        fc_qp,
    }
}

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&b| b as u8).collect()
}
fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn build_file(k: &Case) -> Vec<u8> {
    let (c, h, w, o) = (k.c, k.h, k.w, k.o);
    let (ph, pw) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    build([1, c, h, w], |b, xt, _| {
        let act = |b: &mut FileBuilder, name: &str, layout: Layout, dims: &[usize], q: Q| {
            let id = b.activation(name, DType::I8, layout, dims);
            let t = b.tensor_mut(id).unwrap();
            t.quant_scale = q.s;
            t.quant_zero_point = q.z;
            id
        };
        let xq = act(b, "xq", Layout::Nhwc, &[1, h, w, c], k.qx);
        b.op(OpKind::Quantize, "quant", &[xt], &[xq], &[0u32; 0]);
        let conv = |b: &mut FileBuilder, name: &str, cw: &ConvW, x: u32, res: u32, y: u32, qmin: i32| {
            let packed = pack_i8_n16k4(&cw.w, cw.o, cw.k, cw.k, cw.ig, cw.groups);
            let wt = b.constant(
                &format!("{name}.w"),
                DType::I8,
                Layout::PackedN16K4,
                &[cw.o, cw.k, cw.k, cw.ig],
                i8_bytes(&packed),
            );
            let qt = b.constant(&format!("{name}.qp"), DType::I32, Layout::RowMajor, &[cw.o, 4], i32_bytes(&cw.qp));
            let p = ConvParams {
                kernel_h: cw.k as u32,
                kernel_w: cw.k as u32,
                stride_h: 1,
                stride_w: 1,
                pad_top: (cw.k / 2) as u32,
                pad_left: (cw.k / 2) as u32,
                pad_bottom: (cw.k / 2) as u32,
                pad_right: (cw.k / 2) as u32,
                dilation_h: 1,
                dilation_w: 1,
                groups: cw.groups as u32,
                algo: 3,
                qmin,
                qmax: 127,
                ..Default::default()
            };
            b.op(OpKind::Conv2d, name, &[x, wt, qt, res], &[y], &p);
        };
        let a = act(b, "a", Layout::Nhwc, &[1, h, w, o], k.qa);
        conv(b, "conv_a", &k.conv_a, xq, NONE, a, k.qa.z.max(-128));
        let bb = act(b, "b", Layout::Nhwc, &[1, h, w, o], k.qb);
        conv(b, "conv_b", &k.conv_b, xq, a, bb, k.qb.z);
        let m = act(b, "m", Layout::Nhwc, &[1, ph, pw, o], k.qb);
        let pool = |kk: u32, s: u32, pad: u32| PoolParams {
            kernel_h: kk,
            kernel_w: kk,
            stride_h: s,
            stride_w: s,
            pad_top: pad,
            pad_left: pad,
            pad_bottom: pad,
            pad_right: pad,
            dilation_h: 1,
            dilation_w: 1,
            ..Default::default()
        };
        b.op(OpKind::MaxPool2d, "maxpool", &[bb], &[m], &pool(3, 2, 1));
        let v = act(b, "v", Layout::Nhwc, &[1, ph, pw, o], k.qv);
        b.op(OpKind::AvgPool2d, "avgpool", &[m], &[v], &PoolParams { mult: k.avg.0, shift: k.avg.1, ..pool(3, 1, 1) });
        let s = act(b, "s", Layout::Nhwc, &[1, ph, pw, o], k.qs);
        let st = [0, (pw * o) as u32, o as u32, 1, 0, 0];
        let ap = AddParams {
            rank: 4,
            a_strides: st,
            b_strides: st,
            m_a: k.add.0,
            m_b: k.add.1,
            shift: k.add.2,
            qmin: -128,
            qmax: 127,
            ..Default::default()
        };
        b.op(OpKind::Add, "add", &[m, v], &[s], &ap);
        let g = act(b, "g", Layout::Nhwc, &[1, 1, 1, o], k.qg);
        b.op(OpKind::GlobalAvgPool, "gap", &[s], &[g], &GlobalPoolParams { mult: k.gap.0, shift: k.gap.1 });
        let f = act(b, "f", Layout::RowMajor, &[1, o], k.qg);
        b.op(OpKind::Copy, "flatten", &[g], &[f], &[0u32; 0]);
        let packed = pack_i8_n16k4(&k.fc, k.n_out, 1, 1, o, 1);
        let wt = b.constant("fc.w", DType::I8, Layout::PackedN16K4, &[k.n_out, o], i8_bytes(&packed));
        let qt = b.constant("fc.qp", DType::I32, Layout::RowMajor, &[k.n_out, 4], i32_bytes(&k.fc_qp));
        let l = act(b, "l", Layout::RowMajor, &[1, k.n_out], k.ql);
        b.op(OpKind::Linear, "fc", &[f, wt, qt], &[l], &ActParams { qmin: -128, qmax: 127, ..Default::default() });
        let out = b.activation("out", DType::F32, Layout::RowMajor, &[1, k.n_out]);
        b.op(OpKind::Dequantize, "dequant", &[l], &[out], &[0u32; 0]);
        out
    })
}

fn reference(k: &Case, x_nchw: &[f32]) -> Vec<f32> {
    let (c, h, w, o) = (k.c, k.h, k.w, k.o);
    let mut xq = vec![0i8; h * w * c];
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                xq[(y * w + xx) * c + ch] = quantize(x_nchw[(ch * h + y) * w + xx], k.qx.s, k.qx.z);
            }
        }
    }
    let a = ref_conv(&xq, h, w, c, k.qx.z, &k.conv_a, None, k.qa.z, k.qa.z.max(-128));
    let bb = ref_conv(&xq, h, w, c, k.qx.z, &k.conv_b, Some((&a, k.qa.z)), k.qb.z, k.qb.z);
    let (ph, pw) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    // Max pool 3x3 / 2, pad 1 (padding taps ignored).
    let mut m = vec![0i8; ph * pw * o];
    for py in 0..ph {
        for px in 0..pw {
            for ch in 0..o {
                let mut best = i8::MIN;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let (iy, ix) = ((py * 2 + dy) as i64 - 1, (px * 2 + dx) as i64 - 1);
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            best = best.max(bb[((iy as usize) * w + ix as usize) * o + ch]);
                        }
                    }
                }
                m[(py * pw + px) * o + ch] = best;
            }
        }
    }
    // Avg pool 3x3 / 1, pad 1, divisor = taps inside.
    let mut v = vec![0i8; ph * pw * o];
    for py in 0..ph {
        for px in 0..pw {
            for ch in 0..o {
                let (mut sum, mut cnt) = (0i64, 0i64);
                for dy in 0..3 {
                    for dx in 0..3 {
                        let (iy, ix) = ((py + dy) as i64 - 1, (px + dx) as i64 - 1);
                        if iy >= 0 && ix >= 0 && (iy as usize) < ph && (ix as usize) < pw {
                            sum += m[((iy as usize) * pw + ix as usize) * o + ch] as i64 - k.qb.z as i64;
                            cnt += 1;
                        }
                    }
                }
                let q = div_round(sra_round(sum * k.avg.0 as i64, k.avg.1), cnt) + k.qv.z as i64;
                v[(py * pw + px) * o + ch] = q.clamp(-128, 127) as i8;
            }
        }
    }
    let s: Vec<i8> = m
        .iter()
        .zip(&v)
        .map(|(&a, &b)| {
            let t = (a as i64 - k.qb.z as i64) * k.add.0 as i64 + (b as i64 - k.qv.z as i64) * k.add.1 as i64;
            (sra_round(t, k.add.2) + k.qs.z as i64).clamp(-128, 127) as i8
        })
        .collect();
    let g: Vec<i8> = (0..o)
        .map(|ch| {
            let sum: i64 = (0..ph * pw).map(|p| s[p * o + ch] as i64 - k.qs.z as i64).sum();
            (div_round(sra_round(sum * k.gap.0 as i64, k.gap.1), (ph * pw) as i64) + k.qg.z as i64).clamp(-128, 127)
                as i8
        })
        .collect();
    (0..k.n_out)
        .map(|n| {
            let acc: i64 = (0..o).map(|i| g[i] as i64 * k.fc[n * o + i] as i64).sum();
            let q = &k.fc_qp[n * 4..n * 4 + 4];
            let s = (acc as i32).wrapping_add(q[0]) as i64;
            let l = requant(s, q[1] as i64, 0, 0, q[3] as u32, k.ql.z as i64, -128, 127);
            ((l as i32 - k.ql.z) as f32) * k.ql.s
        })
        .collect()
}

#[test]
fn int8_graph_matches_the_spec_bit_for_bit_on_every_tier_and_thread_count() {
    let tiers: Vec<Isa> = [Isa::Generic, Isa::detect()].into_iter().collect();
    let mut distinct = std::collections::BTreeSet::new();
    let mut saturated = 0usize;
    let mut total = 0usize;
    for seed in 0..40 {
        let k = case(seed);
        let bytes = build_file(&k);
        let model = Model::from_bytes(bytes).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let mut r = Rng::new(1000 + seed);
        let x: Vec<f32> = (0..model.input_len()).map(|_| r.f32() * 3.0).collect();
        let want = reference(&k, &x);
        distinct.extend(want.iter().map(|v| v.to_bits()));
        saturated += want
            .iter()
            .filter(|&&v| v == (127 - k.ql.z) as f32 * k.ql.s || v == (-128 - k.ql.z) as f32 * k.ql.s)
            .count();
        total += want.len();
        for &isa in &tiers {
            for threads in 1..=3 {
                let mut s = model.session(Options::default().threads(threads).max_isa(isa)).unwrap();
                let got = s.run(&x).unwrap();
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "seed {seed} (c {} o {} groups {} {}x{}) isa {isa:?} threads {threads}",
                    k.c,
                    k.o,
                    k.groups,
                    k.h,
                    k.w
                );
            }
        }
    }
    // The cases exercise the arithmetic, not only the clamps.
    assert!(distinct.len() > total / 2, "{} distinct outputs of {total}", distinct.len());
    assert!(saturated * 4 < total, "{saturated} of {total} outputs saturated");
}

#[test]
fn int8_loader_rejects_what_the_kernels_cannot_take() {
    let k = case(3);
    let good = build_file(&k);
    assert!(Model::from_bytes(good.clone()).is_ok());
    // A weight byte of -128 (the exactness proofs need [-127, 127]).
    let mut k2 = case(3);
    k2.conv_a.w[0] = -128;
    let err = Model::from_bytes(build_file(&k2)).unwrap_err().to_string();
    assert!(err.contains("-128"), "{err}");
    // A shift outside [1, 62].
    let mut k3 = case(3);
    k3.conv_b.qp[3] = 63;
    let err = Model::from_bytes(build_file(&k3)).unwrap_err().to_string();
    assert!(err.contains("shift 63"), "{err}");
    // A negative multiplier.
    let mut k4 = case(3);
    k4.fc_qp[1] = -5;
    let err = Model::from_bytes(build_file(&k4)).unwrap_err().to_string();
    assert!(err.contains("m_acc -5"), "{err}");
}
