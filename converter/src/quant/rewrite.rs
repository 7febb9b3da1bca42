//! Rewriting a lowered fp32 [`Program`] into its int8 (or mixed int8 + float) form, and into
//! fp16 weights. The numerics are the contract of `docs/FORMAT.md` / the int8 spec:
//!
//! - weights: symmetric per output channel, `s_w[o] = max|w[o]| / 127` (1 for an all-zero
//!   channel), `q = clamp(round_ties_even(w / s_w), -127, 127)`, packed PackedN16K4;
//! - a `qparams` I32 `[O, 4]` constant per Conv2d / Linear: `[bias, m_acc, m_res, shift]` with
//!   `bias = round(b / (s_x s_w)) - z_x * sum_k q[o][k]` and `M ≈ m * 2^-shift` (f64, the
//!   largest shift in [1, 62] keeping every `m <= 2^31 - 1`);
//! - activations asymmetric per tensor from the [`QuantPlan`].
//!
//! Which ops run in int8: Conv2d and Linear (unless kept float), Add (when an operand arrives
//! in int8), MaxPool / AvgPool / GlobalAvgPool, Copy / Transpose / Slice / Pad (when their
//! input arrives in int8). Everything else runs in f32. Every tensor exists in the form its
//! producer writes; a consumer that needs the other form gets a `Quantize` (output named
//! `<name>.q`) or `Dequantize` (`<name>.dq`) inserted just before its first such consumer,
//! once per tensor. The graph output stays F32 RowMajor: when an int8 op produces it, a final
//! `Dequantize` writes `<name>.dq`, the file's output tensor.

use crate::error::ConvertError;
use crate::ir::ConvSpec;
use crate::lower::{choose_conv_algo, f32_bytes, LOp, LTensor, Packing, Params, Program};
use resq::format::{
    ActKind, ActParams, AddParams, ConvParams, DType, GlobalPoolParams, Layout, OpKind, PadParams, PoolParams, NONE,
};
use resq::kernels::int8::pack::pack_i8_n16k4;
use resq::kernels::pack::pack_n16;
use std::collections::{HashMap, HashSet};

/// Quantization of one activation tensor: `r = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActQuant {
    pub scale: f32,
    pub zero_point: i32,
}

/// What to quantize and how (built by calibration).
#[derive(Clone, Debug, Default)]
pub struct QuantPlan {
    /// Activation tensor name (as in the fp32 `Program`: `LTensor::name`) -> its int8 quantization.
    pub act: HashMap<String, ActQuant>,
    /// `LOp::name`s of Conv2d/Linear layers to keep in float (mixed precision).
    pub keep_float: HashSet<String>,
    /// Weights of kept-float layers stored as f16 (true) or f32 (false).
    pub keep_float_f16: bool,
}

/// Largest `K = KH*KW*I/groups` the loader accepts for an int8 conv / linear.
pub const MAX_INT8_K: usize = 131_072;

/// Names of the layers that can be int8 (Conv2d and Linear ops), in execution order.
pub fn quantizable_layers(prog: &Program) -> Vec<String> {
    prog.ops.iter().filter(|op| matches!(op.kind, OpKind::Conv2d | OpKind::Linear)).map(|op| op.name.clone()).collect()
}

/// (scale, zero point) from a real range `[lo, hi]`, asymmetric int8: the range is widened to
/// contain 0 (so 0 is exactly representable), `scale = (hi - lo) / 255`, `lo` maps to -128:
/// `zero_point = round(-128 - lo / scale)` in [-128, 127]. NaN bounds count as 0, infinite
/// ones as ±1e30; an empty range (`lo = hi = 0`) gives scale 1.
pub fn act_quant_from_range(lo: f32, hi: f32) -> ActQuant {
    let clean = |v: f32| if v.is_nan() { 0.0 } else { f64::from(v.clamp(-1e30, 1e30)) };
    let (lo, hi) = (clean(lo).min(0.0), clean(hi).max(0.0));
    let mut scale = ((hi - lo) / 255.0) as f32;
    if scale.is_nan() || scale < f32::MIN_POSITIVE {
        scale = if hi > lo { f32::MIN_POSITIVE } else { 1.0 };
    }
    let z = (-128.0 - lo / f64::from(scale)).round_ties_even().clamp(-128.0, 127.0) as i32;
    ActQuant { scale, zero_point: z }
}

/// Fixed-point form of non-negative real multipliers sharing one shift: the largest `shift` in
/// [1, 62] with every `m = round(M * 2^shift) <= 2^31 - 1`. `None` when a multiplier is
/// negative or not finite, or so large (>= 2^30) that even shift 1 does not fit.
pub fn fixed_point_multipliers(reals: &[f64]) -> Option<(Vec<i32>, u32)> {
    if reals.iter().any(|m| !(m.is_finite() && *m >= 0.0)) {
        return None;
    }
    let max = reals.iter().copied().fold(0.0f64, f64::max);
    for shift in (1..=62u32).rev() {
        let scale = (shift as f64).exp2();
        if (max * scale).round() <= i32::MAX as f64 {
            return Some((reals.iter().map(|m| (m * scale).round() as i32).collect(), shift));
        }
    }
    None
}

/// Symmetric per-output-channel int8 weights: `(q, s_w)` for `o` rows of `w.len() / o`
/// values. `s_w[r] = max|w[r]| / 127` (1 for an all-zero row), computed in f32, and
/// `q = clamp(round_ties_even(w / s_w), -127, 127)` (f32 division). `None` if a weight is not
/// finite or `w.len()` is not a multiple of `o`.
pub fn quantize_weights(w: &[f32], o: usize) -> Option<(Vec<i8>, Vec<f32>)> {
    if o == 0 || w.len() % o != 0 || w.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let k = w.len() / o;
    let scales: Vec<f32> = (0..o)
        .map(|r| {
            let m = w[r * k..][..k].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if m > 0.0 {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    Some((quantize_rows(w, &scales), scales))
}

fn quantize_rows(w: &[f32], scales: &[f32]) -> Vec<i8> {
    let k = w.len() / scales.len().max(1);
    w.iter().enumerate().map(|(i, &v)| (v / scales[i / k]).round_ties_even().clamp(-127.0, 127.0) as i8).collect()
}

/// An int8 Conv2d / Linear layer's constants.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLayer {
    /// `[O][K]` int8 weights (OHWI order for convs), not yet packed.
    pub weights: Vec<i8>,
    /// Per-channel weight scales actually used.
    pub w_scale: Vec<f32>,
    /// `[O][4]`: bias, m_acc, m_res, shift.
    pub qparams: Vec<i32>,
}

/// Quantize a Conv2d / Linear layer's weights `w` (`[O][K]`, OHWI for convs) and bias into
/// int8 weights and the `qparams` rows, for input `x`, output `y` and an optional residual.
///
/// The int32 bias is `round(b / (s_x s_w)) - z_x * sum_k q`. A channel whose bias at the
/// accumulator scale would not leave room for the accumulator inside i32 (a near-zero channel
/// with a real bias, as BatchNorm folding makes when gamma ≈ 0) gets a larger `s_w`: the
/// smallest that keeps `|round(b / (s_x s_w))| + 255 * 127 * K <= 2^31 - 1`, so that the i32
/// sum `acc + bias` provably cannot wrap (for K <= 66000; beyond, only the bias is bounded).
/// The weights of such a channel are negligible next to its bias at that scale.
/// Errors name `layer`: non-finite values, a multiplier `s_x s_w / s_y` or `s_res / s_y` of
/// 2^30 or more (no shift in [1, 62] fits).
pub fn quantize_layer(
    layer: &str,
    w: &[f32],
    bias: Option<&[f32]>,
    o: usize,
    x: ActQuant,
    y: ActQuant,
    residual: Option<ActQuant>,
) -> Result<QuantizedLayer, ConvertError> {
    let err = |msg: String| ConvertError::Other(format!("int8 layer '{layer}': {msg}"));
    if o == 0 || w.len() % o != 0 || w.is_empty() {
        return Err(err(format!("{} weights do not form {o} output channels", w.len())));
    }
    if let Some(b) = bias {
        if b.len() != o {
            return Err(err(format!("bias has {} values for {o} output channels", b.len())));
        }
        if let Some(i) = b.iter().position(|v| !v.is_finite()) {
            return Err(err(format!("bias[{i}] = {} is not finite", b[i])));
        }
    }
    for (what, q) in [("input", Some(x)), ("output", Some(y)), ("residual", residual)] {
        if let Some(q) = q {
            if !(q.scale.is_finite() && q.scale > 0.0 && (-128..=127).contains(&q.zero_point)) {
                return Err(err(format!(
                    "{what} quantization scale {} zero point {} is invalid",
                    q.scale, q.zero_point
                )));
            }
        }
    }
    let k = w.len() / o;
    let (_, mut scales) =
        quantize_weights(w, o).ok_or_else(|| err("a weight is not finite (NaN or infinity)".into()))?;
    let (s_x, s_y) = (f64::from(x.scale), f64::from(y.scale));
    // Headroom for sum_k (x - z_x) * q, |x - z_x| <= 255, |q| <= 127.
    let limit = (i32::MAX as f64 - 255.0 * 127.0 * k as f64).max((1u64 << 24) as f64);
    for (r, s) in scales.iter_mut().enumerate() {
        let b = bias.map_or(0.0, |b| f64::from(b[r]));
        let need = b.abs() / (s_x * limit);
        if f64::from(*s) < need {
            let mut wide = (need * (1.0 + 1e-6)) as f32;
            while f64::from(wide) < need {
                wide *= 1.0 + 1e-6;
            }
            *s = wide;
        }
    }
    let q = quantize_rows(w, &scales);
    let m_res = residual.map_or(0.0, |r| f64::from(r.scale) / s_y);
    let mut qparams = Vec::with_capacity(o * 4);
    for r in 0..o {
        let s_acc = s_x * f64::from(scales[r]);
        let b = bias.map_or(0.0, |b| f64::from(b[r]));
        let sum_q: i64 = q[r * k..][..k].iter().map(|&v| i64::from(v)).sum();
        let bq = (b / s_acc).round_ties_even();
        let full = bq - (x.zero_point as f64) * sum_q as f64;
        if full.is_nan() || full.abs() > i32::MAX as f64 {
            return Err(err(format!(
                "channel {r}: int32 bias {full} (bias {b} at scale {s_acc:e}, zero point folded in) overflows i32"
            )));
        }
        let m_acc = s_acc / s_y;
        let (m, shift) = fixed_point_multipliers(&[m_acc, m_res]).ok_or_else(|| {
            err(format!(
                "channel {r}: requantization multiplier s_x*s_w/s_y = {m_acc:e} or s_res/s_y = {m_res:e} is too large \
                 (must be < 2^30); keep this layer in float"
            ))
        })?;
        qparams.extend_from_slice(&[full as i32, m[0], m[1], shift as i32]);
    }
    Ok(QuantizedLayer { weights: q, w_scale: scales, qparams })
}

/// The fused activation as a clamp in the output's quantized domain `(qmin, qmax)`:
/// none -> [-128, 127]; ReLU -> [max(z_y, -128), 127]; Clip(lo, hi) -> the quantized bounds
/// `round_ties_even(v / s_y) + z_y` clamped to [-128, 127] (infinite bounds saturate).
pub fn quantized_act_range(act: u32, act_min: f32, act_max: f32, y: ActQuant) -> Option<(i32, i32)> {
    let q = |v: f32| -> i32 {
        if v.is_nan() {
            return y.zero_point;
        }
        let t = (f64::from(v) / f64::from(y.scale)).round_ties_even() + f64::from(y.zero_point);
        t.clamp(-128.0, 127.0) as i32
    };
    match act {
        a if a == ActKind::None as u32 => Some((-128, 127)),
        a if a == ActKind::Relu as u32 => Some((y.zero_point.max(-128), 127)),
        a if a == ActKind::Clip as u32 => {
            let (lo, hi) = (q(act_min), q(act_max));
            // min(max(x, lo), hi) is hi everywhere when lo > hi.
            Some((lo.min(hi), hi))
        }
        _ => None,
    }
}

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&b| b as u8).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_values(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// F32 payload bytes -> IEEE binary16 bytes (round to nearest even).
fn f16_bytes(b: &[u8]) -> Vec<u8> {
    f32_values(b).into_iter().flat_map(|v| half::f16::from_f32(v).to_bits().to_le_bytes()).collect()
}

/// Store an F32 constant as F16 (no-op for other dtypes or activations).
fn make_f16(t: &mut LTensor) {
    if t.dtype == DType::F32 {
        if let Some(b) = &t.bytes {
            t.bytes = Some(f16_bytes(b));
            t.dtype = DType::F16;
        }
    }
}

/// fp32 program (fast packing) -> the same program with every Conv2d/Linear weight stored F16
/// (`half::f16::from_f32`, round to nearest even, of the packed f32 values). Biases stay F32.
pub fn to_fp16(mut prog: Program) -> Program {
    let weights: HashSet<u32> = prog
        .ops
        .iter()
        .filter(|op| matches!(op.kind, OpKind::Conv2d | OpKind::Linear))
        .filter_map(|op| op.inputs.get(1).copied())
        .filter(|&w| w != NONE)
        .collect();
    for w in weights {
        if let Some(t) = prog.tensors.get_mut(w as usize) {
            make_f16(t);
        }
    }
    prog
}

/// fp32 program lowered with `Packing::Reference` (OHWI conv weights, RowMajor linear) ->
/// int8/mixed program on the fast layouts (PackedN16K4 for int8; PackedN16/Winograd via
/// `choose_conv_algo` for float layers). Activation tensors keep their names; tensors inserted
/// are named `<name>.q` (Quantize outputs) / `<name>.dq` (Dequantize outputs); each int8
/// layer's requantization constants are `<weight name>.qparams`.
///
/// Every activation an int8 op reads or writes needs an entry in `plan.act`, except outputs of
/// Copy/Transpose/Slice (their input's entry is used) and pool outputs (default: the input's
/// quantization). Errors name the layer or tensor.
pub fn quantize_program(prog: Program, plan: &QuantPlan) -> Result<Program, ConvertError> {
    for t in &prog.tensors {
        if t.dtype != DType::F32 {
            return Err(ConvertError::Other(format!(
                "quantize_program needs an fp32 program; tensor '{}' is {:?}",
                t.name, t.dtype
            )));
        }
    }
    let names: HashSet<&str> = prog.ops.iter().map(|op| op.name.as_str()).collect();
    let mut unknown: Vec<&str> = plan.keep_float.iter().map(|s| s.as_str()).filter(|n| !names.contains(n)).collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Err(ConvertError::Other(format!(
            "layers to keep in float not found in the model: {} (layers: {})",
            unknown.join(", "),
            quantizable_layers(&prog).join(", ")
        )));
    }
    let n = prog.tensors.len();
    let mut producer = vec![None; n];
    for op in &prog.ops {
        for &o in &op.outputs {
            if let Some(slot) = producer.get_mut(o as usize) {
                *slot = Some((op.kind, op.inputs.first().copied().unwrap_or(NONE)));
            }
        }
    }
    let Program { tensors, ops, input, output, input_dims } = prog;
    let mut rw = Rewriter {
        plan,
        old: tensors,
        producer,
        p: Program { input_dims, ..Default::default() },
        f32_form: vec![None; n],
        i8_form: vec![None; n],
        native_i8: vec![false; n],
    };
    let inp = rw.old.get(input as usize).ok_or_else(|| ConvertError::Other("program input out of range".into()))?;
    let id = rw.push(LTensor::f32(inp.name.clone(), inp.layout, inp.dims.clone(), None));
    rw.f32_form[input as usize] = Some(id);
    rw.p.input = id;
    for op in ops {
        rw.op(op)?;
    }
    // The graph output is F32: dequantized (`<name>.dq`) when an int8 op produces it.
    rw.p.output = rw.f32_of(output)?;
    Ok(rw.p)
}

struct Rewriter<'a> {
    plan: &'a QuantPlan,
    /// The fp32 program's tensors.
    old: Vec<LTensor>,
    /// Per old tensor: kind of the op producing it and that op's first input.
    producer: Vec<Option<(OpKind, u32)>>,
    p: Program,
    /// New ids of each old tensor's F32 and I8 forms.
    f32_form: Vec<Option<u32>>,
    i8_form: Vec<Option<u32>>,
    /// The old tensor's producer writes I8.
    native_i8: Vec<bool>,
}

fn layer_err(op: &LOp, msg: impl Into<String>) -> ConvertError {
    ConvertError::node(op.kind.name(), &op.name, msg)
}

impl Rewriter<'_> {
    fn push(&mut self, t: LTensor) -> u32 {
        self.p.tensors.push(t);
        (self.p.tensors.len() - 1) as u32
    }

    fn push_op(&mut self, kind: OpKind, name: String, inputs: Vec<u32>, outputs: Vec<u32>, params: Params) {
        self.p.ops.push(LOp { kind, name, inputs, outputs, params });
    }

    fn old_tensor(&self, t: u32) -> Result<&LTensor, ConvertError> {
        self.old.get(t as usize).ok_or_else(|| ConvertError::Other(format!("tensor id {t} out of range")))
    }

    /// The plan's quantization of old tensor `t`; outputs of Copy/Transpose/Slice fall back
    /// to their input's.
    fn act_of(&self, t: u32) -> Result<ActQuant, ConvertError> {
        let mut cur = t;
        loop {
            let tt = self.old_tensor(cur)?;
            if let Some(q) = self.plan.act.get(&tt.name) {
                return Ok(*q);
            }
            match self.producer[cur as usize] {
                Some((OpKind::Copy | OpKind::Transpose | OpKind::Slice, src)) if src != NONE => cur = src,
                _ => {
                    return Err(ConvertError::Other(format!(
                        "the quantization plan has no scale / zero point for activation '{}'",
                        self.old[t as usize].name
                    )))
                }
            }
        }
    }

    /// Quantization of the I8 form of `t` (its actual tensor if it exists, else the plan's).
    fn i8_params(&self, t: u32) -> Result<ActQuant, ConvertError> {
        match self.i8_form.get(t as usize).copied().flatten() {
            Some(id) => {
                let tt = &self.p.tensors[id as usize];
                Ok(ActQuant { scale: tt.scale, zero_point: tt.zero_point })
            }
            None => self.act_of(t),
        }
    }

    /// The F32 form of old tensor `t` (constants copied once; int8 tensors dequantized once).
    fn f32_of(&mut self, t: u32) -> Result<u32, ConvertError> {
        if t == NONE {
            return Ok(NONE);
        }
        if let Some(id) = self.f32_form.get(t as usize).copied().flatten() {
            return Ok(id);
        }
        let old = self.old_tensor(t)?.clone();
        let id = if old.bytes.is_some() {
            self.push(old)
        } else if let Some(q) = self.i8_form[t as usize] {
            let id = self.push(LTensor::f32(format!("{}.dq", old.name), old.layout, old.dims, None));
            self.push_op(OpKind::Dequantize, format!("dequantize:{}", old.name), vec![q], vec![id], Params::None);
            id
        } else {
            return Err(ConvertError::Other(format!("tensor '{}' is used before it is produced", old.name)));
        };
        self.f32_form[t as usize] = Some(id);
        Ok(id)
    }

    /// The I8 form of old activation `t` (quantized once from its F32 form if needed).
    fn i8_of(&mut self, t: u32) -> Result<u32, ConvertError> {
        if let Some(id) = self.i8_form.get(t as usize).copied().flatten() {
            return Ok(id);
        }
        if self.old_tensor(t)?.bytes.is_some() {
            return Err(ConvertError::Other(format!(
                "constant '{}' cannot be an int8 activation",
                self.old[t as usize].name
            )));
        }
        let q = self.act_of(t)?;
        let f = self.f32_of(t)?;
        let old = &self.old[t as usize];
        let (name, layout, dims) = (old.name.clone(), old.layout, old.dims.clone());
        let id = self.push(LTensor {
            name: format!("{name}.q"),
            layout,
            dims,
            bytes: None,
            dtype: DType::I8,
            scale: q.scale,
            zero_point: q.zero_point,
        });
        self.push_op(OpKind::Quantize, format!("quantize:{name}"), vec![f], vec![id], Params::None);
        self.i8_form[t as usize] = Some(id);
        Ok(id)
    }

    /// Declare the new form of an op's output `t` (I8 with `q`, or F32).
    fn output(&mut self, t: u32, q: Option<ActQuant>) -> Result<u32, ConvertError> {
        let old = self.old_tensor(t)?;
        let mut nt = LTensor::f32(old.name.clone(), old.layout, old.dims.clone(), None);
        if let Some(q) = q {
            (nt.dtype, nt.scale, nt.zero_point) = (DType::I8, q.scale, q.zero_point);
        }
        let id = self.push(nt);
        if q.is_some() {
            self.i8_form[t as usize] = Some(id);
            self.native_i8[t as usize] = true;
        } else {
            self.f32_form[t as usize] = Some(id);
        }
        Ok(id)
    }

    fn is_i8(&self, t: u32) -> bool {
        t != NONE && self.native_i8.get(t as usize).copied().unwrap_or(false)
    }

    fn op(&mut self, op: LOp) -> Result<(), ConvertError> {
        let x = op.inputs.first().copied().unwrap_or(NONE);
        match op.kind {
            OpKind::Conv2d | OpKind::Linear if self.plan.keep_float.contains(&op.name) => self.float_layer(op),
            OpKind::Conv2d => self.int8_conv(op),
            OpKind::Linear => self.int8_linear(op),
            OpKind::MaxPool2d | OpKind::Copy | OpKind::Transpose | OpKind::Slice | OpKind::Pad if self.is_i8(x) => {
                self.int8_passthrough(op)
            }
            OpKind::AvgPool2d | OpKind::GlobalAvgPool if self.is_i8(x) => self.int8_avgpool(op),
            OpKind::Add if self.add_is_int8(&op) => self.int8_add(op),
            _ => self.float_op(op),
        }
    }

    fn float_op(&mut self, op: LOp) -> Result<(), ConvertError> {
        let inputs = op.inputs.iter().map(|&t| self.f32_of(t)).collect::<Result<Vec<_>, _>>()?;
        let outputs = op.outputs.iter().map(|&t| self.output(t, None)).collect::<Result<Vec<_>, _>>()?;
        self.push_op(op.kind, op.name, inputs, outputs, op.params);
        Ok(())
    }

    /// The weight of a Conv2d/Linear op as f32 values with its dims, checking the reference
    /// layout.
    fn weight(&self, op: &LOp) -> Result<(u32, Vec<f32>, Vec<usize>), ConvertError> {
        let w = op.inputs.get(1).copied().unwrap_or(NONE);
        let t = self.old_tensor(w).map_err(|_| layer_err(op, "no weight tensor"))?;
        let want = if op.kind == OpKind::Conv2d { (Layout::Ohwi, 4) } else { (Layout::RowMajor, 2) };
        match &t.bytes {
            Some(b) if (t.layout, t.dims.len()) == want && b.len() == 4 * t.dims.iter().product::<usize>() => {
                Ok((w, f32_values(b), t.dims.clone()))
            }
            _ => Err(layer_err(
                op,
                format!(
                    "weight '{}' is {:?} {:?}: quantize_program needs a program lowered with Packing::Reference",
                    t.name, t.layout, t.dims
                ),
            )),
        }
    }

    fn bias(&self, op: &LOp, o: usize) -> Result<Option<Vec<f32>>, ConvertError> {
        let b = op.inputs.get(2).copied().unwrap_or(NONE);
        if b == NONE {
            return Ok(None);
        }
        let t = self.old_tensor(b)?;
        match &t.bytes {
            Some(bytes) if bytes.len() == 4 * o => Ok(Some(f32_values(bytes))),
            _ => Err(layer_err(op, format!("bias '{}' is not a constant of {o} f32 values", t.name))),
        }
    }

    fn push_qparams(&mut self, wname: &str, qp: &[i32]) -> u32 {
        self.push(LTensor {
            name: format!("{wname}.qparams"),
            layout: Layout::RowMajor,
            dims: vec![qp.len() / 4, 4],
            bytes: Some(i32_bytes(qp)),
            dtype: DType::I32,
            scale: 0.0,
            zero_point: 0,
        })
    }

    fn push_i8_weight(&mut self, name: String, dims: Vec<usize>, packed: &[i8]) -> u32 {
        self.push(LTensor {
            name,
            layout: Layout::PackedN16K4,
            dims,
            bytes: Some(i8_bytes(packed)),
            dtype: DType::I8,
            scale: 0.0,
            zero_point: 0,
        })
    }

    fn int8_conv(&mut self, op: LOp) -> Result<(), ConvertError> {
        let Params::Conv(cp) = op.params else { return Err(layer_err(&op, "Conv2d without conv params")) };
        let get = |i: usize| op.inputs.get(i).copied().unwrap_or(NONE);
        let (x, r, y) = (get(0), get(3), op.outputs.first().copied().unwrap_or(NONE));
        let (w, wv, dims) = self.weight(&op)?;
        let [o, kh, kw, ig] = [dims[0], dims[1], dims[2], dims[3]];
        let groups = cp.groups as usize;
        if groups == 0 || o % groups != 0 {
            return Err(layer_err(&op, format!("{o} output channels in {groups} groups")));
        }
        let k = kh * kw * ig;
        if k > MAX_INT8_K {
            return Err(layer_err(&op, format!("K = {k} > {MAX_INT8_K} cannot run in int8; keep this layer in float")));
        }
        let xi = self.i8_of(x)?;
        let qx = self.i8_params(x)?;
        let (ri, qr) = if r != NONE { (self.i8_of(r)?, Some(self.i8_params(r)?)) } else { (NONE, None) };
        let qy = self.act_of(y)?;
        let bias = self.bias(&op, o)?;
        let ql = quantize_layer(&op.name, &wv, bias.as_deref(), o, qx, qy, qr)?;
        let (qmin, qmax) = quantized_act_range(cp.act, cp.act_min, cp.act_max, qy)
            .ok_or_else(|| layer_err(&op, format!("unknown activation {}", cp.act)))?;
        let packed = pack_i8_n16k4(&ql.weights, o, kh, kw, ig, groups);
        if packed.is_empty() {
            return Err(layer_err(&op, format!("cannot pack int8 weights {dims:?}")));
        }
        let wname = self.old[w as usize].name.clone();
        let wi = self.push_i8_weight(wname.clone(), dims, &packed);
        let qi = self.push_qparams(&wname, &ql.qparams);
        let yi = self.output(y, Some(qy))?;
        let p = ConvParams { act: 0, act_min: 0.0, act_max: 0.0, algo: 3, qmin, qmax, ..cp };
        self.push_op(OpKind::Conv2d, op.name, vec![xi, wi, qi, ri], vec![yi], Params::Conv(p));
        Ok(())
    }

    fn int8_linear(&mut self, op: LOp) -> Result<(), ConvertError> {
        let Params::Act(ap) = op.params else { return Err(layer_err(&op, "Linear without activation params")) };
        let (x, y) = (op.inputs.first().copied().unwrap_or(NONE), op.outputs.first().copied().unwrap_or(NONE));
        let (w, wv, dims) = self.weight(&op)?;
        let (nn, k) = (dims[0], dims[1]);
        if k > MAX_INT8_K {
            return Err(layer_err(&op, format!("K = {k} > {MAX_INT8_K} cannot run in int8; keep this layer in float")));
        }
        let xi = self.i8_of(x)?;
        let qx = self.i8_params(x)?;
        let qy = self.act_of(y)?;
        let bias = self.bias(&op, nn)?;
        let ql = quantize_layer(&op.name, &wv, bias.as_deref(), nn, qx, qy, None)?;
        let (qmin, qmax) = quantized_act_range(ap.act, ap.act_min, ap.act_max, qy)
            .ok_or_else(|| layer_err(&op, format!("unknown activation {}", ap.act)))?;
        let packed = pack_i8_n16k4(&ql.weights, nn, 1, 1, k, 1);
        if packed.is_empty() {
            return Err(layer_err(&op, format!("cannot pack int8 weights {dims:?}")));
        }
        let wname = self.old[w as usize].name.clone();
        let wi = self.push_i8_weight(wname.clone(), dims, &packed);
        let qi = self.push_qparams(&wname, &ql.qparams);
        let yi = self.output(y, Some(qy))?;
        let p = ActParams { act: 0, act_min: 0.0, act_max: 0.0, qmin, qmax };
        self.push_op(OpKind::Linear, op.name, vec![xi, wi, qi], vec![yi], Params::Act(p));
        Ok(())
    }

    /// A kept-float Conv2d / Linear on the fast layouts (PackedN16 / Winograd), weights F16
    /// when the plan says so.
    fn float_layer(&mut self, op: LOp) -> Result<(), ConvertError> {
        let (w, wv, dims) = self.weight(&op)?;
        let wname = self.old[w as usize].name.clone();
        let get = |i: usize| op.inputs.get(i).copied().unwrap_or(NONE);
        let (mut wt, params) = match (&op.params, op.kind) {
            (Params::Conv(cp), OpKind::Conv2d) => {
                let [o, kh, kw, ig] = [dims[0], dims[1], dims[2], dims[3]];
                // OHWI -> OIHW, the order choose_conv_algo takes.
                let mut oihw = vec![0.0f32; wv.len()];
                for oo in 0..o {
                    for yy in 0..kh {
                        for xx in 0..kw {
                            for i in 0..ig {
                                oihw[((oo * ig + i) * kh + yy) * kw + xx] = wv[((oo * kh + yy) * kw + xx) * ig + i];
                            }
                        }
                    }
                }
                let nchw = |t: u32| -> Result<[usize; 4], ConvertError> {
                    let d = &self.old_tensor(t)?.dims;
                    match d.as_slice() {
                        [n, h, w, c] => Ok([*n, *c, *h, *w]),
                        _ => Err(layer_err(&op, format!("activation dims {d:?} are not NHWC"))),
                    }
                };
                let (input, output) = (nchw(get(0))?, nchw(op.outputs.first().copied().unwrap_or(NONE))?);
                let spec = ConvSpec {
                    kernel: [cp.kernel_h as usize, cp.kernel_w as usize],
                    strides: [cp.stride_h as usize, cp.stride_w as usize],
                    pads: [cp.pad_top, cp.pad_left, cp.pad_bottom, cp.pad_right].map(|v| v as usize),
                    dilations: [cp.dilation_h as usize, cp.dilation_w as usize],
                    groups: cp.groups as usize,
                };
                let cw = choose_conv_algo(&spec, input, output, &oihw, [o, ig, kh, kw], Packing::Fast);
                if cw.bytes.is_empty() {
                    return Err(layer_err(&op, format!("cannot pack weights {dims:?} in {} groups", cp.groups)));
                }
                let p = Params::Conv(ConvParams { algo: cw.algo, ..*cp });
                (LTensor::f32(wname, cw.layout, cw.dims, Some(cw.bytes)), p)
            }
            (Params::Act(_), OpKind::Linear) => {
                let packed = pack_n16(&wv, dims[0], 1, 1, dims[1], 1);
                (LTensor::f32(wname, Layout::PackedN16, dims, Some(f32_bytes(&packed))), op.params.clone())
            }
            _ => return Err(layer_err(&op, "unexpected params")),
        };
        if self.plan.keep_float_f16 {
            make_f16(&mut wt);
        }
        let wi = self.push(wt);
        let mut inputs = vec![self.f32_of(get(0))?, wi];
        for &t in &op.inputs[2.min(op.inputs.len())..] {
            inputs.push(self.f32_of(t)?);
        }
        let yi = self.output(op.outputs.first().copied().unwrap_or(NONE), None)?;
        self.push_op(op.kind, op.name, inputs, vec![yi], params);
        Ok(())
    }

    /// MaxPool / Copy / Transpose / Slice / Pad on int8 bytes: the output has the input's
    /// quantization.
    fn int8_passthrough(&mut self, op: LOp) -> Result<(), ConvertError> {
        let x = op.inputs[0];
        let xi = self.i8_of(x)?;
        let q = self.i8_params(x)?;
        let params = match op.params {
            // The pad byte is the quantized pad value (0.0 -> the zero point).
            Params::Pad(p) => {
                let v = if p.value.is_nan() {
                    q.zero_point as f32
                } else {
                    ((f64::from(p.value) / f64::from(q.scale)).round_ties_even() + f64::from(q.zero_point))
                        .clamp(-128.0, 127.0) as f32
                };
                Params::Pad(PadParams { value: v, ..p })
            }
            other => other,
        };
        let outputs = op.outputs.iter().map(|&t| self.output(t, Some(q))).collect::<Result<Vec<_>, _>>()?;
        self.push_op(op.kind, op.name, vec![xi], outputs, params);
        Ok(())
    }

    fn int8_avgpool(&mut self, op: LOp) -> Result<(), ConvertError> {
        let (x, y) = (op.inputs[0], op.outputs.first().copied().unwrap_or(NONE));
        let xi = self.i8_of(x)?;
        let qx = self.i8_params(x)?;
        let yname = &self.old_tensor(y)?.name;
        let qy = self.plan.act.get(yname).copied().unwrap_or(qx);
        let ratio = f64::from(qx.scale) / f64::from(qy.scale);
        let (m, shift) = fixed_point_multipliers(&[ratio]).ok_or_else(|| {
            layer_err(&op, format!("requantization multiplier s_x/s_y = {ratio:e} is too large (must be < 2^30)"))
        })?;
        let params = match op.params {
            Params::Pool(p) => Params::Pool(PoolParams { mult: m[0], shift, ..p }),
            _ => Params::GlobalPool(GlobalPoolParams { mult: m[0], shift }),
        };
        let yi = self.output(y, Some(qy))?;
        self.push_op(op.kind, op.name, vec![xi], vec![yi], params);
        Ok(())
    }

    /// Add runs in int8 when both operands are activations and at least one arrives in int8.
    fn add_is_int8(&self, op: &LOp) -> bool {
        let is_act = |t: u32| self.old.get(t as usize).is_some_and(|t| t.bytes.is_none());
        op.inputs.len() == 2 && op.inputs.iter().all(|&t| is_act(t)) && op.inputs.iter().any(|&t| self.is_i8(t))
    }

    fn int8_add(&mut self, op: LOp) -> Result<(), ConvertError> {
        let Params::Add(ap) = op.params else { return Err(layer_err(&op, "Add without add params")) };
        let (a, b, y) = (op.inputs[0], op.inputs[1], op.outputs.first().copied().unwrap_or(NONE));
        let (ai, bi) = (self.i8_of(a)?, self.i8_of(b)?);
        let (qa, qb, qy) = (self.i8_params(a)?, self.i8_params(b)?, self.act_of(y)?);
        let s_y = f64::from(qy.scale);
        let (ma, mb) = (f64::from(qa.scale) / s_y, f64::from(qb.scale) / s_y);
        let (m, shift) = fixed_point_multipliers(&[ma, mb]).ok_or_else(|| {
            layer_err(&op, format!("requantization multipliers s_a/s_y = {ma:e}, s_b/s_y = {mb:e}: must be < 2^30"))
        })?;
        let (qmin, qmax) = quantized_act_range(ap.act, ap.act_min, ap.act_max, qy)
            .ok_or_else(|| layer_err(&op, format!("unknown activation {}", ap.act)))?;
        let yi = self.output(y, Some(qy))?;
        let p = AddParams { act: 0, act_min: 0.0, act_max: 0.0, m_a: m[0], m_b: m[1], shift, qmin, qmax, ..ap };
        self.push_op(OpKind::Add, op.name, vec![ai, bi], vec![yi], Params::Add(p));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_to_scale_and_zero_point() {
        let q = act_quant_from_range(-1.0, 3.0);
        assert_eq!(q.scale, (4.0f64 / 255.0) as f32);
        assert_eq!(q.zero_point, -128 + 64); // 1 / (4/255) = 63.75 -> 64
        assert_eq!(act_quant_from_range(0.0, 6.0).zero_point, -128);
        assert_eq!(act_quant_from_range(-2.0, 0.0).zero_point, 127);
        // 0 forced into the range.
        assert_eq!(act_quant_from_range(1.0, 2.0), act_quant_from_range(0.0, 2.0));
        assert_eq!(act_quant_from_range(0.0, 0.0), ActQuant { scale: 1.0, zero_point: -128 });
        assert_eq!(act_quant_from_range(f32::NAN, f32::NAN), ActQuant { scale: 1.0, zero_point: -128 });
        assert!(act_quant_from_range(f32::NEG_INFINITY, f32::INFINITY).scale.is_finite());
    }

    #[test]
    fn multiplier_shift_is_the_largest_that_fits() {
        let (m, s) = fixed_point_multipliers(&[1.0]).unwrap();
        assert_eq!((m[0], s), (1 << 30, 30));
        let (m, s) = fixed_point_multipliers(&[0.5, 0.25]).unwrap();
        assert_eq!((m, s), (vec![1 << 30, 1 << 29], 31));
        // Tiny multipliers hit the shift cap.
        let (m, s) = fixed_point_multipliers(&[1e-12]).unwrap();
        assert_eq!((m[0], s), ((1e-12f64 * 2f64.powi(62)).round() as i32, 62));
        // Largest representable: just below 2^30 fits with shift 1.
        let (m, s) = fixed_point_multipliers(&[1073741823.0]).unwrap();
        assert_eq!((m[0], s), (2147483646, 1));
        assert!(fixed_point_multipliers(&[1073741824.0]).is_none());
        assert!(fixed_point_multipliers(&[f64::NAN]).is_none());
        assert!(fixed_point_multipliers(&[-1.0]).is_none());
        assert_eq!(fixed_point_multipliers(&[0.0, 0.0]).unwrap(), (vec![0, 0], 62));
    }
}
