//! Reduced precision: int8 calibration and quantisation, fp16 weights, accuracy reports.
//!
//! - [`calib`]: calibration images (selection, decoding, preprocessing as the file says) and
//!   the fp32 pass that observes every activation.
//! - [`observe`]: range observers (min/max, percentile, entropy, MSE).
//! - [`rewrite`]: the fp32 program -> int8 / mixed / fp16 program (weights, qparams,
//!   Quantize/Dequantize placement).
//! - [`report`]: per-layer SQNR / relative error and top-1 agreement against fp32.
//!
//! The graph output and Softmax inputs (logits) always get their min/max range whatever the
//! method: clipping the largest logits makes them tie and changes top-1.
//!
//! [`int8_program`] ties them together, including `--accuracy-budget`: while the held-out
//! top-1 agreement with fp32 is below `100 - budget` percent, the int8 layer with the lowest
//! SQNR moves to fp16 and the model is quantised and measured again.

pub mod calib;
pub mod observe;
pub mod report;
pub mod rewrite;

use crate::error::ConvertError;
use crate::ir::Graph;
use crate::lower::{lower, Packing, Program};
use observe::Method;
use report::{LayerSpec, Report};
use resq::format::OpKind;
use rewrite::{act_quant_from_range, quantizable_layers, quantize_program, QuantPlan};
use std::collections::HashSet;
use std::path::PathBuf;

/// Default `--calibration-count`.
pub const DEFAULT_COUNT: usize = 500;

/// Calibration and mixed-precision options (`--calibrate`, `--calibration-count`,
/// `--calibration-method`, `--keep-float`, `--accuracy-budget`).
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationOptions {
    /// Folder of calibration images (PNG / JPEG, searched recursively). Required for int8;
    /// with fp16 it only adds the accuracy report.
    pub dir: Option<PathBuf>,
    /// Images to use (picked evenly over the sorted files; one in five is held out).
    pub count: usize,
    pub method: Method,
    /// Conv2d / Linear layers (op names) kept in float (f16 weights).
    pub keep_float: Vec<String>,
    /// Largest allowed loss of held-out top-1 agreement with fp32, in percentage points.
    pub accuracy_budget: Option<f64>,
    /// Worker threads for calibration and the report (0 = the machine's parallelism).
    pub threads: usize,
    /// Show progress bars on stderr (when it is a terminal).
    pub progress: bool,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions {
            dir: None,
            count: DEFAULT_COUNT,
            method: Method::default(),
            keep_float: Vec::new(),
            accuracy_budget: None,
            threads: 0,
            progress: false,
        }
    }
}

/// A reduced-precision program, ready to be written, and what calibration found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub program: Program,
    /// `MetaRecord::precision`: 1 fp16, 2 int8, 3 mixed.
    pub precision: u32,
    pub report: Option<Report>,
    /// Layers kept in float (from `--keep-float` and the budget), in execution order.
    pub kept_float: Vec<String>,
    /// Lines for the user (images used, budget steps).
    pub log: Vec<String>,
}

/// Writes a program as `.resq` bytes with the given metadata precision and report.
pub type Writer<'a> = dyn Fn(Program, u32, Option<&Report>) -> Result<Vec<u8>, ConvertError> + 'a;

fn model_from(bytes: Vec<u8>, what: &str) -> Result<resq::Model, ConvertError> {
    resq::Model::from_bytes(bytes)
        .map_err(|e| ConvertError::Other(format!("the {what} model does not load in the runtime: {e}")))
}

/// The report rows of `prog` (its Conv2d / Linear ops that `layers` names).
fn layer_specs(prog: &Program, layers: &HashSet<&str>, keep: &HashSet<String>, float_code: u32) -> Vec<LayerSpec> {
    prog.ops
        .iter()
        .enumerate()
        .filter(|(_, op)| matches!(op.kind, OpKind::Conv2d | OpKind::Linear) && layers.contains(op.name.as_str()))
        .filter_map(|(i, op)| {
            let out = *op.outputs.first()?;
            Some(LayerSpec {
                name: op.name.clone(),
                op: i,
                tensor: prog.tensors.get(out as usize)?.name.clone(),
                precision: if keep.contains(&op.name) { float_code } else { report::INT8 },
            })
        })
        .collect()
}

/// Reject `--keep-float` names that are not Conv2d / Linear layers of the model.
fn check_layer_names(names: &[String], layers: &[String]) -> Result<(), ConvertError> {
    let known: HashSet<&str> = layers.iter().map(|s| s.as_str()).collect();
    let unknown: Vec<&str> = names.iter().map(|s| s.as_str()).filter(|n| !known.contains(n)).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ConvertError::Other(format!(
        "--keep-float: {} not a Conv2d/Linear layer of the model; its layers are: {}",
        unknown.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
        layers.join(", ")
    )))
}

/// fp32 reference: the fast-packing program written and loaded.
fn fp32_model(g: &Graph, write: &Writer) -> Result<resq::Model, ConvertError> {
    let prog = lower(g, Packing::Fast)?;
    model_from(write(prog, 0, None)?, "fp32")
}

/// The int8 (or mixed) program of `g`, calibrated on `c.dir`.
pub fn int8_program(g: &Graph, c: &CalibrationOptions, write: &Writer) -> Result<Outcome, ConvertError> {
    let Some(dir) = &c.dir else {
        return Err(ConvertError::Other(
            "--precision int8 needs calibration images: pass --calibrate DIR (a folder of PNG/JPEG images \
             like the ones the model will see; subfolders are searched), optionally --calibration-count N \
             (default 500)"
                .into(),
        ));
    };
    if let Some(b) = c.accuracy_budget {
        if !(b.is_finite() && (0.0..=100.0).contains(&b)) {
            return Err(ConvertError::Other(format!("--accuracy-budget {b}: expected points between 0 and 100")));
        }
    }
    let reference_prog = lower(g, Packing::Reference)?;
    let layers = quantizable_layers(&reference_prog);
    check_layer_names(&c.keep_float, &layers)?;

    let set = calib::images(dir, c.count)?;
    let mut log = vec![format!(
        "calibration: {} image(s) found under {}, {} used to calibrate ({}), {} held out for the report",
        set.found,
        dir.display(),
        set.calibration.len(),
        c.method.name(),
        if set.held_out == set.calibration {
            "none: too few, the calibration images are".into()
        } else {
            set.held_out.len().to_string()
        },
    )];
    let reference = fp32_model(g, write)?;
    let observers = calib::observe(&reference, &set.calibration, c.method, c.threads, c.progress)?;
    // The logits decide top-1: clipping them (any method but minmax may) makes the largest
    // ones tie. The graph output and Softmax inputs keep their full observed range.
    let mut full_range: HashSet<&str> = HashSet::new();
    if let Some(t) = reference_prog.tensors.get(reference_prog.output as usize) {
        full_range.insert(&t.name);
    }
    for op in reference_prog.ops.iter().filter(|op| op.kind == OpKind::Softmax) {
        if let Some(t) = op.inputs.first().and_then(|&i| reference_prog.tensors.get(i as usize)) {
            full_range.insert(&t.name);
        }
    }
    let mut plan = QuantPlan { keep_float_f16: true, ..Default::default() };
    for (name, o) in &observers {
        let method = if full_range.contains(name.as_str()) { Method::MinMax } else { c.method };
        let (lo, hi) = o.range_for(method);
        plan.act.insert(name.clone(), act_quant_from_range(lo, hi));
    }
    plan.keep_float.extend(c.keep_float.iter().cloned());

    let layer_set: HashSet<&str> = layers.iter().map(|s| s.as_str()).collect();
    loop {
        let prog = quantize_program(reference_prog.clone(), &plan)?;
        let code = if plan.keep_float.is_empty() { 2 } else { 3 };
        let specs = layer_specs(&prog, &layer_set, &plan.keep_float, report::FP16);
        let candidate = model_from(write(prog.clone(), code, None)?, "int8")?;
        let msg = format!("measuring int8 ({} float)", plan.keep_float.len());
        let rep = report::compare(&reference, &candidate, &specs, &set.held_out, c.threads, c.progress, &msg)?;
        let agreement = rep.agreement_pct();
        let next = match c.accuracy_budget {
            Some(b) if agreement < 100.0 - b => rep.worst_int8_layer().map(|r| (r.name.clone(), r.sqnr_db, b)),
            _ => None,
        };
        match next {
            Some((name, sqnr, b)) => {
                log.push(format!(
                    "accuracy budget {b} points: agreement {agreement:.2}% < {:.2}%; keeping '{name}' \
                     (lowest SQNR, {sqnr:.1} dB) in fp16",
                    100.0 - b
                ));
                plan.keep_float.insert(name);
            }
            None => {
                if let Some(b) = c.accuracy_budget {
                    log.push(if agreement >= 100.0 - b {
                        format!("accuracy budget {b} points met: held-out top-1 agreement {agreement:.2}%")
                    } else {
                        format!(
                            "accuracy budget {b} points NOT met: every layer is float and the held-out \
                             agreement is {agreement:.2}%"
                        )
                    });
                }
                let kept_float = layers.iter().filter(|l| plan.keep_float.contains(*l)).cloned().collect();
                return Ok(Outcome { program: prog, precision: code, report: Some(rep), kept_float, log });
            }
        }
    }
}

/// The fp16-weight program of `g` (packing as asked), with a report when `c.dir` is given.
pub fn fp16_program(
    g: &Graph,
    packing: Packing,
    c: &CalibrationOptions,
    write: &Writer,
) -> Result<Outcome, ConvertError> {
    if !c.keep_float.is_empty() || c.accuracy_budget.is_some() {
        return Err(ConvertError::Other(
            "--keep-float and --accuracy-budget apply to --precision int8 (fp16 keeps every layer in float)".into(),
        ));
    }
    let prog = rewrite::to_fp16(lower(g, packing)?);
    let mut log = Vec::new();
    let report = match &c.dir {
        None => None,
        Some(dir) => {
            let set = calib::images(dir, c.count)?;
            log.push(format!(
                "report: {} image(s) found under {}, {} measured",
                set.found,
                dir.display(),
                set.held_out.len()
            ));
            let reference = fp32_model(g, write)?;
            let layers = quantizable_layers(&prog);
            let layer_set: HashSet<&str> = layers.iter().map(|s| s.as_str()).collect();
            let all: HashSet<String> = layers.iter().cloned().collect();
            let specs = layer_specs(&prog, &layer_set, &all, report::FP16);
            let candidate = model_from(write(prog.clone(), 1, None)?, "fp16")?;
            Some(report::compare(
                &reference,
                &candidate,
                &specs,
                &set.held_out,
                c.threads,
                c.progress,
                "measuring fp16",
            )?)
        }
    };
    Ok(Outcome { program: prog, precision: 1, report, kept_float: Vec::new(), log })
}
