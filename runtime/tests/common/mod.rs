//! Shared helpers of the runtime's integration tests: a tiny deterministic RNG, a small model
//! built with `FileBuilder`, and a harness that wraps ops between NCHW<->NHWC transposes.
#![allow(dead_code)]

use resq::format::*;

/// xorshift64: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

pub fn params<P: bytemuck::Pod>(p: P) -> P {
    p
}

/// Metadata for a graph with input `input` (NCHW dims) and output `output`.
pub fn meta(b: &mut FileBuilder, input: u32, dims: [usize; 4], output: u32) -> MetaRecord {
    let mut m = empty_meta();
    m.name = b.string("test");
    m.producer = b.string("resq tests");
    m.input_tensor = input;
    m.output_tensor = output;
    m.input_dims = dims.map(|d| d as u32);
    m
}

/// Build a model: input `[N, C, H, W]` RowMajor; `body(b, x_nhwc, x_nchw)` adds ops and returns
/// the output tensor (an F32 RowMajor activation). `x_nhwc` is the input transposed to NHWC.
pub fn build(dims: [usize; 4], body: impl FnOnce(&mut FileBuilder, u32, u32) -> u32) -> Vec<u8> {
    let mut b = FileBuilder::new();
    let x = b.activation("input", DType::F32, Layout::RowMajor, &dims);
    let [n, c, h, w] = dims;
    let xt = b.activation("input_nhwc", DType::F32, Layout::Nhwc, &[n, h, w, c]);
    b.op(OpKind::Transpose, "to_nhwc", &[x], &[xt], &TransposeParams { rank: 4, perm: [0, 2, 3, 1, 0, 0] });
    let out = body(&mut b, xt, x);
    let m = meta(&mut b, x, dims, out);
    b.set_meta(m);
    b.finish().expect("test model builds")
}

/// Append a Transpose NHWC -> NCHW RowMajor of `y` (dims `[n, h, w, c]`); returns the new id.
pub fn to_nchw(b: &mut FileBuilder, y: u32, nhwc: [usize; 4]) -> u32 {
    let [n, h, w, c] = nhwc;
    let o = b.activation("out_nchw", DType::F32, Layout::RowMajor, &[n, c, h, w]);
    b.op(OpKind::Transpose, "to_nchw", &[y], &[o], &TransposeParams { rank: 4, perm: [0, 3, 1, 2, 0, 0] });
    o
}

/// Run a model file once on `input` (1 thread).
pub fn run_once(bytes: Vec<u8>, input: &[f32]) -> Vec<f32> {
    let model = resq::Model::from_bytes(bytes).expect("model loads");
    let mut s = model.session(resq::Options::default().threads(1)).expect("session");
    s.run(input).expect("run").to_vec()
}

/// Assert `got` ≈ `want` elementwise (relative + absolute tolerance).
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= tol * (1.0 + w.abs()), "{what}: element {i}: got {g}, want {w} (err {err})");
    }
}

/// The tiny model of the tests: input [1,3,8,8] -> Conv 3x3 (3->4, pad 1, bias, ReLU) ->
/// MaxPool 2x2/2 -> GlobalAvgPool -> Copy to [1,4] -> Linear 4->3 -> Softmax -> [1,3].
/// Returns the file bytes and the weights used `(conv OIHW, conv bias, fc [3,4], fc bias)`.
pub fn tiny_model(seed: u64) -> (Vec<u8>, TinyWeights) {
    let mut r = Rng::new(seed);
    let wt = TinyWeights { conv_w: r.vec(4 * 3 * 3 * 3), conv_b: r.vec(4), fc_w: r.vec(3 * 4), fc_b: r.vec(3) };
    let ohwi = oihw_to_ohwi(&wt.conv_w, 4, 3, 3, 3);
    let w2 = wt.clone();
    let bytes = build([1, 3, 8, 8], move |b, x, _| {
        let w = b.constant_f32("conv.w", Layout::Ohwi, &[4, 3, 3, 3], &ohwi);
        let bias = b.constant_f32("conv.b", Layout::RowMajor, &[4], &w2.conv_b);
        let c = b.activation("conv", DType::F32, Layout::Nhwc, &[1, 8, 8, 4]);
        let cp = ConvParams {
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 1,
            stride_w: 1,
            pad_top: 1,
            pad_left: 1,
            pad_bottom: 1,
            pad_right: 1,
            dilation_h: 1,
            dilation_w: 1,
            groups: 1,
            act: ActKind::Relu as u32,
            ..Default::default()
        };
        b.op(OpKind::Conv2d, "conv", &[x, w, bias, NONE], &[c], &cp);
        let p = b.activation("pool", DType::F32, Layout::Nhwc, &[1, 4, 4, 4]);
        let pp = PoolParams {
            kernel_h: 2,
            kernel_w: 2,
            stride_h: 2,
            stride_w: 2,
            dilation_h: 1,
            dilation_w: 1,
            ..Default::default()
        };
        b.op(OpKind::MaxPool2d, "pool", &[c], &[p], &pp);
        let g = b.activation("gap", DType::F32, Layout::Nhwc, &[1, 1, 1, 4]);
        b.op(OpKind::GlobalAvgPool, "gap", &[p], &[g], &[0u32; 0]);
        let f = b.activation("flat", DType::F32, Layout::RowMajor, &[1, 4]);
        b.op(OpKind::Copy, "flatten", &[g], &[f], &[0u32; 0]);
        let fw = b.constant_f32("fc.w", Layout::RowMajor, &[3, 4], &w2.fc_w);
        let fb = b.constant_f32("fc.b", Layout::RowMajor, &[3], &w2.fc_b);
        let l = b.activation("logits", DType::F32, Layout::RowMajor, &[1, 3]);
        b.op(OpKind::Linear, "fc", &[f, fw, fb], &[l], &ActParams::default());
        let s = b.activation("probs", DType::F32, Layout::RowMajor, &[1, 3]);
        b.op(OpKind::Softmax, "softmax", &[l], &[s], &SoftmaxParams { outer: 1, axis_len: 3, inner: 1 });
        s
    });
    (bytes, wt)
}

#[derive(Clone, Debug)]
pub struct TinyWeights {
    pub conv_w: Vec<f32>,
    pub conv_b: Vec<f32>,
    pub fc_w: Vec<f32>,
    pub fc_b: Vec<f32>,
}

/// OIHW -> OHWI.
pub fn oihw_to_ohwi(w: &[f32], o: usize, i: usize, kh: usize, kw: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for oo in 0..o {
        for ii in 0..i {
            for y in 0..kh {
                for x in 0..kw {
                    out[((oo * kh + y) * kw + x) * i + ii] = w[((oo * i + ii) * kh + y) * kw + x];
                }
            }
        }
    }
    out
}

/// The tiny model computed naively in f64, NCHW.
pub fn tiny_reference(wt: &TinyWeights, x: &[f32]) -> Vec<f64> {
    let mut conv = vec![0f64; 4 * 64];
    for o in 0..4 {
        for y in 0..8 {
            for xx in 0..8 {
                let mut acc = wt.conv_b[o] as f64;
                for i in 0..3 {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (y as i64 + ky as i64 - 1, xx as i64 + kx as i64 - 1);
                            if (0..8).contains(&iy) && (0..8).contains(&ix) {
                                acc += x[i * 64 + iy as usize * 8 + ix as usize] as f64
                                    * wt.conv_w[((o * 3 + i) * 3 + ky) * 3 + kx] as f64;
                            }
                        }
                    }
                }
                conv[o * 64 + y * 8 + xx] = acc.max(0.0);
            }
        }
    }
    let mut gap = [0f64; 4];
    for o in 0..4 {
        for y in 0..4 {
            for xx in 0..4 {
                let m = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|&(a, b)| conv[o * 64 + (2 * y + a) * 8 + 2 * xx + b])
                    .fold(f64::MIN, f64::max);
                gap[o] += m / 16.0;
            }
        }
    }
    let logits: Vec<f64> =
        (0..3).map(|j| wt.fc_b[j] as f64 + (0..4).map(|k| wt.fc_w[j * 4 + k] as f64 * gap[k]).sum::<f64>()).collect();
    let mx = logits.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l - mx).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Recompute the header checksum after editing bytes.
pub fn fix_checksum(bytes: &mut [u8]) {
    let off = resq::format::checksum::CHECKSUM_OFFSET;
    let sum = resq::format::checksum::file_checksum(bytes);
    bytes[off..off + 8].copy_from_slice(&sum.to_le_bytes());
}

/// Where the shared test data lives, or `None` (after printing a skip) when absent.
/// Panics when `RESQ_REQUIRE_DATA=1` and the folder is missing.
pub fn shared_data(test: &str) -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"));
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("RESQ_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("{test}: RESQ_REQUIRE_DATA=1 but {} is missing", p.display());
    }
    eprintln!("SKIP {test}: {} not found", p.display());
    None
}

/// Convert a shared-data ONNX model with the converter library (fp32, defaults).
pub fn convert_shared(data: &std::path::Path, rel: &str) -> Vec<u8> {
    let opts = resq_convert::ConvertOptions::default();
    resq_convert::convert_file(&data.join(rel), &opts).unwrap_or_else(|e| panic!("converting {rel}: {e}"))
}

/// True when the tests run on a non-x86_64 target: in CI that means under qemu-user
/// (aarch64 as a Cortex-A72/A76, armv7), where the portable scalar kernels run 20-50x slower
/// than natively. Whole-model tests then check fewer rows/cases (every assertion and tolerance
/// stays the same), so that each test file stays within CI's time budget.
pub fn emulated() -> bool {
    cfg!(not(target_arch = "x86_64"))
}

/// A `Command` that starts `bin`, a program built for this test's target. Cargo runs the test
/// binaries of a cross target through `CARGO_TARGET_<TRIPLE>_RUNNER` (qemu-user), but not the
/// programs a test spawns, and without binfmt_misc the kernel cannot exec a foreign binary. So
/// the same runner goes in front: `RESQ_TEST_RUNNER` when set (blank: none), else the
/// `CARGO_TARGET_*_RUNNER` variable whose triple names this architecture and OS.
pub fn target_command(bin: &str) -> std::process::Command {
    match test_runner() {
        Some(runner) => {
            let mut words = runner.split_whitespace();
            let mut c = std::process::Command::new(words.next().expect("runner is not blank"));
            c.args(words).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}

fn test_runner() -> Option<String> {
    if let Ok(r) = std::env::var("RESQ_TEST_RUNNER") {
        return (!r.trim().is_empty()).then_some(r);
    }
    // std's ARCH is "aarch64", "arm", "x86_64", ...: the first word of the target triple
    // ("arm" also starts "armv7"). Sorted so the choice does not depend on the env order.
    let prefix = format!("CARGO_TARGET_{}", std::env::consts::ARCH.to_ascii_uppercase());
    let os = format!("_{}_", std::env::consts::OS.to_ascii_uppercase());
    let mut found: Vec<(String, String)> = std::env::vars()
        .filter(|(k, v)| k.starts_with(&prefix) && k.ends_with("_RUNNER") && k.contains(&os) && !v.trim().is_empty())
        .collect();
    found.sort();
    found.into_iter().next().map(|(_, v)| v)
}
