//! Every op kind against a naive reference written differently (NCHW loops, f64, ONNX Runtime
//! formulas), through the public API: each case is a small model (input NCHW -> Transpose to
//! NHWC -> op -> back to NCHW) built with `FileBuilder`, loaded and run. Fixed seeds.

mod common;
use common::*;
use resq::format::*;

fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        idx[d] = i % dims[d];
        i /= dims[d];
    }
    idx
}

fn ravel(idx: &[usize], dims: &[usize]) -> usize {
    idx.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i)
}

fn nchw_to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for (i, &xv) in x.iter().enumerate() {
        let v = unravel(i, &[n, c, h, w]);
        y[ravel(&[v[0], v[2], v[3], v[1]], &[n, h, w, c])] = xv;
    }
    y
}

fn act_ref(a: u32, lo: f32, hi: f32, v: f64) -> f64 {
    match a {
        1 => v.max(0.0),
        2 => v.max(lo as f64).min(hi as f64),
        _ => v,
    }
}

#[derive(Clone, Copy, Debug)]
struct ConvCase {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    pads: [usize; 4], // top, left, bottom, right
    dh: usize,
    dw: usize,
    g: usize,
    bias: bool,
    residual: bool,
    act: u32,
}

fn conv_out(i: usize, pa: usize, pb: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    (i + pa + pb).checked_sub(span).map(|v| v / s + 1)
}

/// Naive NCHW convolution with OIHW weights, in f64.
fn conv_ref(cs: &ConvCase, x: &[f32], w: &[f32], b: &[f32], res: &[f32], oh: usize, ow: usize) -> Vec<f64> {
    let ig = cs.c / cs.g;
    let og = cs.o / cs.g;
    let mut y = vec![0f64; cs.n * cs.o * oh * ow];
    for n in 0..cs.n {
        for o in 0..cs.o {
            let g = o / og;
            for yy in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0f64;
                    for i in 0..ig {
                        let ci = g * ig + i;
                        for ky in 0..cs.kh {
                            for kx in 0..cs.kw {
                                let iy = (yy * cs.sh + ky * cs.dh) as i64 - cs.pads[0] as i64;
                                let ix = (xx * cs.sw + kx * cs.dw) as i64 - cs.pads[1] as i64;
                                if iy < 0 || ix < 0 || iy >= cs.h as i64 || ix >= cs.w as i64 {
                                    continue;
                                }
                                let xv = x[((n * cs.c + ci) * cs.h + iy as usize) * cs.w + ix as usize] as f64;
                                let wv = w[((o * ig + i) * cs.kh + ky) * cs.kw + kx] as f64;
                                acc += xv * wv;
                            }
                        }
                    }
                    let at = ((n * cs.o + o) * oh + yy) * ow + xx;
                    if cs.bias {
                        acc += b[o] as f64;
                    }
                    if cs.residual {
                        acc += res[at] as f64;
                    }
                    y[at] = act_ref(cs.act, -0.25, 0.5, acc);
                }
            }
        }
    }
    y
}

fn run_conv_case(cs: ConvCase, seed: u64) {
    let mut r = Rng::new(seed);
    let (Some(oh), Some(ow)) = (
        conv_out(cs.h, cs.pads[0], cs.pads[2], cs.kh, cs.sh, cs.dh),
        conv_out(cs.w, cs.pads[1], cs.pads[3], cs.kw, cs.sw, cs.dw),
    ) else {
        return;
    };
    let ig = cs.c / cs.g;
    let x = r.vec(cs.n * cs.c * cs.h * cs.w);
    let w_oihw = r.vec(cs.o * ig * cs.kh * cs.kw);
    let bias = r.vec(cs.o);
    let res = r.vec(cs.n * cs.o * oh * ow);
    let want = conv_ref(&cs, &x, &w_oihw, &bias, &res, oh, ow);
    let w_ohwi = oihw_to_ohwi(&w_oihw, cs.o, ig, cs.kh, cs.kw);
    let res_nhwc = nchw_to_nhwc(&res, [cs.n, cs.o, oh, ow]);
    let bytes = build([cs.n, cs.c, cs.h, cs.w], |b, xt, _| {
        let wt = b.constant_f32("w", Layout::Ohwi, &[cs.o, cs.kh, cs.kw, ig], &w_ohwi);
        let bt = if cs.bias { b.constant_f32("b", Layout::RowMajor, &[cs.o], &bias) } else { NONE };
        let rt = if cs.residual { b.constant_f32("res", Layout::Nhwc, &[cs.n, oh, ow, cs.o], &res_nhwc) } else { NONE };
        let y = b.activation("y", DType::F32, Layout::Nhwc, &[cs.n, oh, ow, cs.o]);
        let p = ConvParams {
            kernel_h: cs.kh as u32,
            kernel_w: cs.kw as u32,
            stride_h: cs.sh as u32,
            stride_w: cs.sw as u32,
            pad_top: cs.pads[0] as u32,
            pad_left: cs.pads[1] as u32,
            pad_bottom: cs.pads[2] as u32,
            pad_right: cs.pads[3] as u32,
            dilation_h: cs.dh as u32,
            dilation_w: cs.dw as u32,
            groups: cs.g as u32,
            act: cs.act,
            act_min: -0.25,
            act_max: 0.5,
            algo: 0,
            ..Default::default()
        };
        b.op(OpKind::Conv2d, "conv", &[xt, wt, bt, rt], &[y], &p);
        to_nchw(b, y, [cs.n, oh, ow, cs.o])
    });
    let got = run_once(bytes, &x);
    assert_close(&got, &want, 1e-5, &format!("{cs:?}"));
}

#[test]
fn conv2d_matches_naive_nchw() {
    let mut r = Rng::new(0xC0FFEE);
    let mut ran = 0;
    for case in 0..160 {
        let c = r.pick(&[1, 3, 4, 13, 16]);
        let divisors: Vec<usize> = (1..=c).filter(|g| c % g == 0).collect();
        let g = match case % 4 {
            0 => c, // depthwise
            1 => 1,
            _ => r.pick(&divisors),
        };
        let o = if case % 4 == 0 { c } else { g * r.pick(&[1, 2, 3, 4, 5, 16]) };
        let cs = ConvCase {
            n: r.pick(&[1, 1, 2]),
            c,
            o,
            h: 1 + r.below(9),
            w: 1 + r.below(11),
            kh: r.pick(&[1, 2, 3, 5]),
            kw: r.pick(&[1, 3, 4]),
            sh: r.pick(&[1, 2, 3]),
            sw: r.pick(&[1, 2]),
            pads: [r.below(3), r.below(3), r.below(3), r.below(2)],
            dh: r.pick(&[1, 1, 2]),
            dw: r.pick(&[1, 2]),
            g,
            bias: r.below(3) > 0,
            residual: r.below(2) == 0,
            act: r.below(3) as u32,
        };
        if conv_out(cs.h, cs.pads[0], cs.pads[2], cs.kh, cs.sh, cs.dh).is_some()
            && conv_out(cs.w, cs.pads[1], cs.pads[3], cs.kw, cs.sw, cs.dw).is_some()
        {
            ran += 1;
        }
        run_conv_case(cs, case);
    }
    assert!(ran > 100, "only {ran} valid cases");
}

#[test]
fn conv2d_resnet_like_shapes() {
    // 3x3 pad 1 stride 1/2 and 1x1 stride 2 projections, as in ResNet blocks.
    for (i, (c, o, hw, k, s, p)) in
        [(16, 16, 9, 3, 1, 1), (16, 32, 9, 3, 2, 1), (16, 32, 9, 1, 2, 0), (3, 16, 11, 3, 1, 1), (13, 4, 7, 7, 2, 3)]
            .into_iter()
            .enumerate()
    {
        let cs = ConvCase {
            n: 1,
            c,
            o,
            h: hw,
            w: hw,
            kh: k,
            kw: k,
            sh: s,
            sw: s,
            pads: [p; 4],
            dh: 1,
            dw: 1,
            g: 1,
            bias: true,
            residual: i % 2 == 0,
            act: 1,
        };
        run_conv_case(cs, 1000 + i as u64);
    }
}

#[derive(Clone, Copy, Debug)]
struct PoolCase {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    pads: [usize; 4],
    d: [usize; 2],
    ceil: bool,
    include_pad: bool,
    max: bool,
}

/// Output size as ONNX Runtime computes it (ceil mode drops a window that starts in the
/// right padding).
fn pool_out(i: usize, pa: usize, pb: usize, k: usize, s: usize, d: usize, ceil: bool) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let avail = (i + pa + pb).checked_sub(span)?;
    let mut o = if ceil { avail.div_ceil(s) + 1 } else { avail / s + 1 };
    if ceil && (o - 1) * s >= i + pa {
        o -= 1;
    }
    Some(o)
}

fn pool_ref(p: &PoolCase, x: &[f32], oh: usize, ow: usize) -> Vec<f64> {
    let mut y = vec![0f64; p.n * p.c * oh * ow];
    for n in 0..p.n {
        for c in 0..p.c {
            for yy in 0..oh {
                for xx in 0..ow {
                    let at = ((n * p.c + c) * oh + yy) * ow + xx;
                    let (hs, ws) = ((yy * p.s[0]) as i64 - p.pads[0] as i64, (xx * p.s[1]) as i64 - p.pads[1] as i64);
                    let px = |iy: i64, ix: i64| x[((n * p.c + c) * p.h + iy as usize) * p.w + ix as usize] as f64;
                    if p.max {
                        let mut m = f64::NEG_INFINITY;
                        for ky in 0..p.k[0] {
                            for kx in 0..p.k[1] {
                                let (iy, ix) = (hs + (ky * p.d[0]) as i64, ws + (kx * p.d[1]) as i64);
                                if iy >= 0 && ix >= 0 && iy < p.h as i64 && ix < p.w as i64 {
                                    m = m.max(px(iy, ix));
                                }
                            }
                        }
                        y[at] = m;
                    } else {
                        // ONNX Runtime's formula (dilation 1): clamp the window to the padded
                        // input for the include-pad divisor, then to the input for the sum.
                        let he = (hs + p.k[0] as i64).min((p.h + p.pads[2]) as i64);
                        let we = (ws + p.k[1] as i64).min((p.w + p.pads[3]) as i64);
                        let pool_size = ((he - hs) * (we - ws)) as f64;
                        let (h0, w0, h1, w1) = (hs.max(0), ws.max(0), he.min(p.h as i64), we.min(p.w as i64));
                        let mut sum = 0f64;
                        for iy in h0..h1 {
                            for ix in w0..w1 {
                                sum += px(iy, ix);
                            }
                        }
                        let cnt = if p.include_pad { pool_size } else { ((h1 - h0) * (w1 - w0)) as f64 };
                        y[at] = sum / cnt;
                    }
                }
            }
        }
    }
    y
}

#[test]
fn pooling_matches_onnx_runtime_formulas() {
    let mut r = Rng::new(0xB00F);
    let mut ran = 0;
    for case in 0..200 {
        let max = case % 2 == 0;
        let k = [r.pick(&[1, 2, 3, 4]), r.pick(&[1, 2, 3])];
        let p = PoolCase {
            n: r.pick(&[1, 2]),
            c: r.pick(&[1, 3, 4, 13, 16]),
            h: 1 + r.below(9),
            w: 1 + r.below(9),
            k,
            s: [r.pick(&[1, 2, 3]), r.pick(&[1, 2])],
            pads: [r.below(k[0]), r.below(k[1]), r.below(k[0]), r.below(k[1])],
            d: if max { [r.pick(&[1, 2]), r.pick(&[1, 2])] } else { [1, 1] },
            ceil: r.below(2) == 0,
            include_pad: r.below(2) == 0,
            max,
        };
        let (Some(oh), Some(ow)) = (
            pool_out(p.h, p.pads[0], p.pads[2], p.k[0], p.s[0], p.d[0], p.ceil),
            pool_out(p.w, p.pads[1], p.pads[3], p.k[1], p.s[1], p.d[1], p.ceil),
        ) else {
            continue;
        };
        let x = r.vec(p.n * p.c * p.h * p.w);
        let want = pool_ref(&p, &x, oh, ow);
        if want.iter().any(|v| !v.is_finite()) {
            continue; // a dilated max window with no tap inside: the loader rejects those
        }
        ran += 1;
        let bytes = build([p.n, p.c, p.h, p.w], |b, xt, _| {
            let y = b.activation("y", DType::F32, Layout::Nhwc, &[p.n, oh, ow, p.c]);
            let pp = PoolParams {
                kernel_h: p.k[0] as u32,
                kernel_w: p.k[1] as u32,
                stride_h: p.s[0] as u32,
                stride_w: p.s[1] as u32,
                pad_top: p.pads[0] as u32,
                pad_left: p.pads[1] as u32,
                pad_bottom: p.pads[2] as u32,
                pad_right: p.pads[3] as u32,
                dilation_h: p.d[0] as u32,
                dilation_w: p.d[1] as u32,
                count_include_pad: p.include_pad as u32,
                ..Default::default()
            };
            b.op(if p.max { OpKind::MaxPool2d } else { OpKind::AvgPool2d }, "pool", &[xt], &[y], &pp);
            to_nchw(b, y, [p.n, oh, ow, p.c])
        });
        let got = run_once(bytes, &x);
        assert_close(&got, &want, 1e-6, &format!("{p:?}"));
    }
    assert!(ran > 120, "only {ran} cases ran");
}

#[test]
fn global_avg_pool_and_linear() {
    let mut r = Rng::new(77);
    for (n, c, h, w) in [(1, 1, 1, 1), (2, 13, 3, 5), (1, 16, 7, 7), (3, 4, 2, 9)] {
        let x = r.vec(n * c * h * w);
        let want: Vec<f64> = (0..n * c)
            .map(|nc| x[nc * h * w..(nc + 1) * h * w].iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64)
            .collect();
        let bytes = build([n, c, h, w], |b, xt, _| {
            let y = b.activation("y", DType::F32, Layout::Nhwc, &[n, 1, 1, c]);
            b.op(OpKind::GlobalAvgPool, "gap", &[xt], &[y], &[0u32; 0]);
            let f = b.activation("flat", DType::F32, Layout::RowMajor, &[n, c]);
            b.op(OpKind::Copy, "flatten", &[y], &[f], &[0u32; 0]);
            f
        });
        assert_close(&run_once(bytes, &x), &want, 1e-6, "gap");
    }
    for (m, k, nn, bias, act) in
        [(1, 1, 1, false, 0), (1, 37, 10, true, 1), (3, 64, 100, true, 2), (2, 5, 129, false, 0)]
    {
        let x = r.vec(m * k);
        let w = r.vec(nn * k);
        let bv = r.vec(nn);
        let want: Vec<f64> = (0..m * nn)
            .map(|e| {
                let (i, j) = (e / nn, e % nn);
                let mut acc: f64 = (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum();
                if bias {
                    acc += bv[j] as f64;
                }
                act_ref(act, -0.25, 0.5, acc)
            })
            .collect();
        let bytes = build([m, k, 1, 1], |b, _, x_in| {
            let f = b.activation("flat", DType::F32, Layout::RowMajor, &[m, k]);
            b.op(OpKind::Copy, "reshape", &[x_in], &[f], &[0u32; 0]);
            let wt = b.constant_f32("w", Layout::RowMajor, &[nn, k], &w);
            let bt = if bias { b.constant_f32("b", Layout::RowMajor, &[nn], &bv) } else { NONE };
            let y = b.activation("y", DType::F32, Layout::RowMajor, &[m, nn]);
            let ins: &[u32] = if bias { &[f, wt, bt] } else { &[f, wt] };
            b.op(
                OpKind::Linear,
                "fc",
                ins,
                &[y],
                &ActParams { act, act_min: -0.25, act_max: 0.5, ..Default::default() },
            );
            y
        });
        assert_close(&run_once(bytes, &x), &want, 1e-5, &format!("linear {m}x{k}x{nn}"));
    }
}

#[test]
fn add_with_broadcast_strides() {
    let mut r = Rng::new(5);
    let (n, c, h, w) = (2, 13, 3, 5);
    let x = r.vec(n * c * h * w);
    let nhwc = [n, h, w, c];
    // (b dims in NHWC, b strides over y's NHWC dims)
    let cases: Vec<(Vec<usize>, [u32; 4])> = vec![
        (vec![c], [0, 0, 0, 1]),
        (vec![1], [0, 0, 0, 0]),
        (vec![n, h, w, c], [(h * w * c) as u32, (w * c) as u32, c as u32, 1]),
        (vec![n, 1, w, c], [(w * c) as u32, 0, c as u32, 1]),
        (vec![n, h, w, 1], [(h * w) as u32, w as u32, 1, 0]),
    ];
    for (ci, (bd, bs)) in cases.into_iter().enumerate() {
        let bn: usize = bd.iter().product();
        let bv = r.vec(bn);
        let act = (ci % 3) as u32;
        let xh = nchw_to_nhwc(&x, [n, c, h, w]);
        let mut want_nhwc = vec![0f64; x.len()];
        for (i, v) in want_nhwc.iter_mut().enumerate() {
            let idx = unravel(i, &nhwc);
            let off: usize = idx.iter().zip(&bs).map(|(&a, &s)| a * s as usize).sum();
            *v = act_ref(act, -0.25, 0.5, xh[i] as f64 + bv[off] as f64);
        }
        // Back to NCHW for comparison.
        let mut want = vec![0f64; x.len()];
        for (i, v) in want_nhwc.iter().enumerate() {
            let idx = unravel(i, &nhwc);
            want[ravel(&[idx[0], idx[3], idx[1], idx[2]], &[n, c, h, w])] = *v;
        }
        let bytes = build([n, c, h, w], |b, xt, _| {
            let layout = if bd.len() == 4 { Layout::Nhwc } else { Layout::RowMajor };
            let bt = b.constant_f32("b", layout, &bd, &bv);
            let y = b.activation("y", DType::F32, Layout::Nhwc, &nhwc);
            let mut p = AddParams { act, act_min: -0.25, act_max: 0.5, rank: 4, ..Default::default() };
            p.a_strides[..4].copy_from_slice(&[(h * w * c) as u32, (w * c) as u32, c as u32, 1]);
            p.b_strides[..4].copy_from_slice(&bs);
            b.op(OpKind::Add, "add", &[xt, bt], &[y], &p);
            to_nchw(b, y, nhwc)
        });
        // b must share y's layout: rank-1 RowMajor b vs Nhwc y is rejected...
        if bd.len() != 4 {
            let e = resq::Model::from_bytes(bytes).unwrap_err().to_string();
            assert!(e.contains("layout"), "{e}");
            continue;
        }
        assert_close(&run_once(bytes, &x), &want, 1e-6, &format!("add case {ci}"));
    }
    // ...so per-channel and scalar broadcasts are written as RowMajor graphs: x + x[0, :] and
    // a self-add of an activation.
    let bytes = build([n, c, h, w], |b, _, x_in| {
        let y = b.activation("y", DType::F32, Layout::RowMajor, &[n, c, h, w]);
        let mut p = AddParams { rank: 4, ..Default::default() };
        p.a_strides[..4].copy_from_slice(&[(c * h * w) as u32, (h * w) as u32, w as u32, 1]);
        p.b_strides[..4].copy_from_slice(&[0, (h * w) as u32, w as u32, 1]);
        b.op(OpKind::Add, "add", &[x_in, x_in], &[y], &p);
        y
    });
    let want: Vec<f64> = (0..x.len()).map(|i| x[i] as f64 + x[i % (c * h * w)] as f64).collect();
    assert_close(&run_once(bytes, &x), &want, 1e-6, "self add with batch broadcast");
}

#[test]
fn activation_affine_softmax() {
    let mut r = Rng::new(8);
    let (n, c, h, w) = (2, 3, 4, 5);
    let x: Vec<f32> = r.vec(n * c * h * w).iter().map(|v| v * 4.0).collect();
    for act in [1u32, 2] {
        let bytes = build([n, c, h, w], |b, _, xi| {
            let y = b.activation("y", DType::F32, Layout::RowMajor, &[n, c, h, w]);
            b.op(
                OpKind::Activation,
                "act",
                &[xi],
                &[y],
                &ActParams { act, act_min: -0.25, act_max: 0.5, ..Default::default() },
            );
            y
        });
        let want: Vec<f64> = x.iter().map(|&v| act_ref(act, -0.25, 0.5, v as f64)).collect();
        assert_close(&run_once(bytes, &x), &want, 0.0, "activation");
    }
    let scale = r.vec(c);
    let shift = r.vec(c);
    let bytes = build([n, c, h, w], |b, xt, _| {
        let s = b.constant_f32("scale", Layout::RowMajor, &[c], &scale);
        let t = b.constant_f32("shift", Layout::RowMajor, &[c], &shift);
        let y = b.activation("y", DType::F32, Layout::Nhwc, &[n, h, w, c]);
        b.op(OpKind::ChannelAffine, "bn", &[xt, s, t], &[y], &ActParams { act: 1, ..Default::default() });
        to_nchw(b, y, [n, h, w, c])
    });
    let want: Vec<f64> = (0..x.len())
        .map(|i| {
            let ch = unravel(i, &[n, c, h, w])[1];
            (x[i] as f64 * scale[ch] as f64 + shift[ch] as f64).max(0.0)
        })
        .collect();
    assert_close(&run_once(bytes, &x), &want, 1e-6, "channel affine");
    // Softmax over each axis of the NCHW input, with large values (stability).
    let big: Vec<f32> = x.iter().map(|v| v * 100.0).collect();
    let dims = [n, c, h, w];
    for axis in 0..4 {
        let outer: usize = dims[..axis].iter().product();
        let inner: usize = dims[axis + 1..].iter().product();
        let len = dims[axis];
        let bytes = build(dims, |b, _, xi| {
            let y = b.activation("y", DType::F32, Layout::RowMajor, &dims);
            let p = SoftmaxParams { outer: outer as u32, axis_len: len as u32, inner: inner as u32 };
            b.op(OpKind::Softmax, "softmax", &[xi], &[y], &p);
            y
        });
        let mut want = vec![0f64; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |a: usize| (o * len + a) * inner + i;
                let m = (0..len).map(|a| big[at(a)] as f64).fold(f64::MIN, f64::max);
                let s: f64 = (0..len).map(|a| (big[at(a)] as f64 - m).exp()).sum();
                for a in 0..len {
                    want[at(a)] = (big[at(a)] as f64 - m).exp() / s;
                }
            }
        }
        let got = run_once(bytes, &big);
        assert!(got.iter().all(|v| v.is_finite()));
        assert_close(&got, &want, 1e-5, &format!("softmax axis {axis}"));
    }
}

/// Build: input [2,3,4,5] -> Copy (reshape) to `shape` -> op -> output.
fn reshaped(shape: &[usize], out: &[usize], op: impl FnOnce(&mut FileBuilder, u32, u32)) -> Vec<u8> {
    build([2, 3, 4, 5], |b, _, xi| {
        let t = b.activation("reshaped", DType::F32, Layout::RowMajor, shape);
        b.op(OpKind::Copy, "reshape", &[xi], &[t], &[0u32; 0]);
        let y = b.activation("y", DType::F32, Layout::RowMajor, out);
        op(b, t, y);
        y
    })
}

#[test]
fn transpose_slice_pad_on_many_ranks() {
    let mut r = Rng::new(21);
    let x = r.vec(120);
    let shapes: [&[usize]; 5] = [&[120], &[10, 12], &[2, 3, 20], &[2, 3, 4, 5], &[2, 1, 3, 2, 2, 5]];
    for shape in shapes {
        let rank = shape.len();
        for trial in 0..6 {
            // Transpose with a random permutation.
            let mut perm: Vec<usize> = (0..rank).collect();
            for i in (1..rank).rev() {
                perm.swap(i, r.below(i + 1));
            }
            let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            let mut tp = TransposeParams { rank: rank as u32, ..Default::default() };
            for (d, &p) in perm.iter().enumerate() {
                tp.perm[d] = p as u32;
            }
            let bytes = reshaped(shape, &out, |b, t, y| {
                b.op(OpKind::Transpose, "t", &[t], &[y], &tp);
            });
            let mut want = vec![0f64; 120];
            for (i, v) in want.iter_mut().enumerate() {
                let yi = unravel(i, &out);
                let mut xi = vec![0; rank];
                for d in 0..rank {
                    xi[perm[d]] = yi[d];
                }
                *v = x[ravel(&xi, shape)] as f64;
            }
            assert_close(&run_once(bytes, &x), &want, 0.0, &format!("transpose {shape:?} {perm:?}"));

            // Slice with random start/step (negative steps too) inside the extent.
            let mut sp = SliceParams { rank: rank as u32, ..Default::default() };
            let mut out = vec![0; rank];
            for d in 0..rank {
                let len = shape[d] as i32;
                let step = r.pick(&[1, 1, 2, 3, -1, -2]);
                let start = r.below(len as usize) as i32;
                let avail = if step > 0 { (len - 1 - start) / step + 1 } else { start / -step + 1 };
                out[d] = 1 + r.below(avail as usize);
                sp.start[d] = start;
                sp.step[d] = step;
            }
            let bytes = reshaped(shape, &out, |b, t, y| {
                b.op(OpKind::Slice, "s", &[t], &[y], &sp);
            });
            let want: Vec<f64> = (0..out.iter().product())
                .map(|i| {
                    let yi = unravel(i, &out);
                    let xi: Vec<usize> =
                        (0..rank).map(|d| (sp.start[d] as i64 + yi[d] as i64 * sp.step[d] as i64) as usize).collect();
                    x[ravel(&xi, shape)] as f64
                })
                .collect();
            assert_close(&run_once(bytes, &x), &want, 0.0, &format!("slice {shape:?} {sp:?}"));

            // Pad with random before/after.
            let mut pp = PadParams { rank: rank as u32, value: -7.5 + trial as f32, ..Default::default() };
            let mut out = vec![0; rank];
            for d in 0..rank {
                pp.before[d] = r.below(3) as u32;
                out[d] = shape[d] + pp.before[d] as usize + r.below(3);
            }
            let bytes = reshaped(shape, &out, |b, t, y| {
                b.op(OpKind::Pad, "p", &[t], &[y], &pp);
            });
            let want: Vec<f64> = (0..out.iter().product())
                .map(|i| {
                    let yi = unravel(i, &out);
                    let inside =
                        (0..rank).all(|d| yi[d] >= pp.before[d] as usize && yi[d] < pp.before[d] as usize + shape[d]);
                    if inside {
                        let xi: Vec<usize> = (0..rank).map(|d| yi[d] - pp.before[d] as usize).collect();
                        x[ravel(&xi, shape)] as f64
                    } else {
                        pp.value as f64
                    }
                })
                .collect();
            assert_close(&run_once(bytes, &x), &want, 0.0, &format!("pad {shape:?} {pp:?}"));
        }
    }
}

#[test]
fn resnet20_option_a_shortcut_pattern() {
    // x[:, :, ::2, ::2] then zero-pad channels, on NHWC: Slice over H, W; Pad over C; then
    // a conv with that as residual.
    let (n, c, h, w) = (1, 4, 6, 6);
    let x = Rng::new(3).vec(n * c * h * w);
    let bytes = build([n, c, h, w], |b, xt, _| {
        let s = b.activation("sub", DType::F32, Layout::Nhwc, &[n, 3, 3, c]);
        let sp = SliceParams { rank: 4, start: [0; 6], step: [1, 2, 2, 1, 0, 0] };
        b.op(OpKind::Slice, "slice", &[xt], &[s], &sp);
        let p = b.activation("padded", DType::F32, Layout::Nhwc, &[n, 3, 3, 2 * c]);
        let pp = PadParams { rank: 4, before: [0, 0, 0, c as u32 / 2, 0, 0], value: 0.0 };
        b.op(OpKind::Pad, "pad", &[s], &[p], &pp);
        to_nchw(b, p, [n, 3, 3, 2 * c])
    });
    let got = run_once(bytes, &x);
    for o in 0..2 * c {
        for yy in 0..3 {
            for xx in 0..3 {
                let want = if o >= c / 2 && o < c / 2 + c { x[((o - c / 2) * h + 2 * yy) * w + 2 * xx] } else { 0.0 };
                assert_eq!(got[(o * 3 + yy) * 3 + xx], want);
            }
        }
    }
}
