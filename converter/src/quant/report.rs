//! Per-layer accuracy report: a quantised (or fp16) model against the fp32 one.
//!
//! Both models run the same held-out images with every activation kept; for each reported
//! layer the candidate's output (dequantised with `to_f32`) is compared with the fp32 tensor
//! of the same name. Errors are summed over all images before the ratios are taken:
//! `SQNR = 10 log10(sum ref^2 / sum (ref - test)^2)` dB and `rel_l2 = sqrt(sum (ref - test)^2 /
//! sum ref^2)`. The model output row adds the top-1 agreement (argmax of each output row
//! equal in both models). Layer errors are cumulative (they include everything upstream), as
//! the output's are.

use super::calib::{for_each_image, load_input, progress_bar, workers};
use crate::error::ConvertError;
use resq::format::{FileBuilder, LayerReportRecord, NONE};
use resq::{Model, Options};
use std::collections::HashMap;
use std::path::PathBuf;

/// Precision codes of [`LayerReportRecord::precision`].
pub const FP32: u32 = 0;
pub const FP16: u32 = 1;
pub const INT8: u32 = 2;

/// Name of a precision code.
pub fn precision_name(p: u32) -> &'static str {
    match p {
        FP32 => "fp32",
        FP16 => "fp16",
        INT8 => "int8",
        _ => "?",
    }
}

/// A layer to report: its op name and index in the candidate model, the name of its output
/// tensor (the same in both models) and its precision in the candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    pub name: String,
    pub op: usize,
    pub tensor: String,
    pub precision: u32,
}

/// Summed squares of a reference signal and of the error against it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorSum {
    pub signal: f64,
    pub noise: f64,
}

impl ErrorSum {
    pub fn add(&mut self, reference: &[f32], test: &[f32]) {
        for (&r, &t) in reference.iter().zip(test) {
            let (r, t) = (r as f64, t as f64);
            self.signal += r * r;
            self.noise += (r - t) * (r - t);
        }
    }

    pub fn merge(&mut self, o: &ErrorSum) {
        self.signal += o.signal;
        self.noise += o.noise;
    }

    /// SQNR in dB (+inf when there is no error, -inf when the reference is all zero but the
    /// test is not).
    pub fn sqnr_db(&self) -> f32 {
        if self.noise == 0.0 {
            f32::INFINITY
        } else {
            (10.0 * (self.signal / self.noise).log10()) as f32
        }
    }

    /// Relative L2 error (0 when both are zero).
    pub fn rel_l2(&self) -> f32 {
        if self.noise == 0.0 {
            0.0
        } else {
            (self.noise / self.signal).sqrt() as f32
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Layer (op) name, or "output".
    pub name: String,
    /// Op index in the candidate model; `None` for the output row.
    pub op: Option<usize>,
    pub precision: u32,
    pub sqnr_db: f32,
    pub rel_l2: f32,
    /// Output row: top-1 agreement with fp32 (0..1); NaN for layers.
    pub agreement: f32,
}

/// The report: one row per layer (execution order), then the output row.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Held-out images measured.
    pub images: usize,
    /// Top-1 predictions compared (images x batch rows).
    pub predictions: usize,
    /// Top-1 predictions that agree.
    pub agreeing: usize,
}

impl Report {
    /// The output row (the last).
    pub fn output(&self) -> Option<&Row> {
        self.rows.last().filter(|r| r.op.is_none())
    }

    /// Top-1 agreement of the output with fp32, in percent.
    pub fn agreement_pct(&self) -> f64 {
        if self.predictions == 0 {
            100.0
        } else {
            100.0 * self.agreeing as f64 / self.predictions as f64
        }
    }

    /// The report as a text table.
    pub fn table(&self) -> String {
        let w = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
        let mut s = format!(
            "Per-layer error against fp32 on {} held-out image(s) (cumulative: each row includes everything upstream):\n",
            self.images
        );
        s += &format!("  {:<w$}  {:>9}  {:>9}  {:>9}  {:>9}\n", "layer", "precision", "SQNR dB", "rel L2", "top-1 agr");
        for r in &self.rows {
            let agr = if r.agreement.is_nan() { "-".to_string() } else { format!("{:.2}%", 100.0 * r.agreement) };
            s += &format!(
                "  {:<w$}  {:>9}  {:>9.2}  {:>9.5}  {:>9}\n",
                r.name,
                precision_name(r.precision),
                r.sqnr_db,
                r.rel_l2,
                agr
            );
        }
        s
    }

    /// The LAYER_REPORT section bytes (`count` records), names interned in `b`.
    pub fn records(&self, b: &mut FileBuilder) -> (u64, Vec<u8>) {
        let mut out = Vec::with_capacity(self.rows.len() * std::mem::size_of::<LayerReportRecord>());
        for r in &self.rows {
            let rec = LayerReportRecord {
                name: b.string(&r.name),
                op: r.op.map(|o| o as u32).unwrap_or(NONE),
                precision: r.precision,
                sqnr_db: r.sqnr_db,
                rel_l2: r.rel_l2,
                agreement: r.agreement,
                reserved: 0,
            };
            out.extend_from_slice(bytemuck::bytes_of(&rec));
        }
        (self.rows.len() as u64, out)
    }

    /// The int8 layer row with the lowest SQNR, if any.
    pub fn worst_int8_layer(&self) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| r.op.is_some() && r.precision == INT8)
            .min_by(|a, b| a.sqnr_db.partial_cmp(&b.sqnr_db).unwrap_or(std::cmp::Ordering::Equal))
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || (v[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    best
}

/// Tensor ids of `names` in `model` (activations only).
fn ids_by_name(model: &Model, names: &[&str]) -> Vec<Option<u32>> {
    let map: HashMap<String, u32> =
        model.tensors().into_iter().filter(|t| !t.constant).map(|t| (t.name, t.id)).collect();
    names.iter().map(|n| map.get(*n).copied()).collect()
}

/// Run `reference` (fp32) and `candidate` over `images` and build the report for `layers`.
pub fn compare(
    reference: &Model,
    candidate: &Model,
    layers: &[LayerSpec],
    images: &[PathBuf],
    threads: usize,
    progress: bool,
    message: &str,
) -> Result<Report, ConvertError> {
    if reference.input_len() != candidate.input_len() || reference.output_len() != candidate.output_len() {
        return Err(ConvertError::Other("the quantised model's input/output sizes differ from fp32".into()));
    }
    let names: Vec<&str> = layers.iter().map(|l| l.tensor.as_str()).collect();
    let ref_ids = ids_by_name(reference, &names);
    let cand_ids = ids_by_name(candidate, &names);
    let classes = *reference.info().output_shape.last().unwrap_or(&1);
    let classes = classes.max(1);
    let pb = progress_bar(images.len(), message, progress);
    let opts = || Options::default().threads(1).keep_intermediates(true);
    let session_err = |e: resq::Error| ConvertError::Other(format!("report session: {e}"));
    struct State<'a> {
        r: resq::Session<'a>,
        c: resq::Session<'a>,
        input: Vec<f32>,
        layer: Vec<ErrorSum>,
        out: ErrorSum,
        agree: usize,
        total: usize,
    }
    let states = for_each_image(
        images.len(),
        workers(threads, images.len()),
        || {
            Ok(State {
                r: reference.session(opts()).map_err(session_err)?,
                c: candidate.session(opts()).map_err(session_err)?,
                input: vec![0f32; reference.input_len()],
                layer: vec![ErrorSum::default(); layers.len()],
                out: ErrorSum::default(),
                agree: 0,
                total: 0,
            })
        },
        |st, i| {
            let fail = |e: resq::Error| ConvertError::Other(format!("image {}: {e}", images[i].display()));
            load_input(&images[i], reference, &mut st.input)?;
            let ro = st.r.run(&st.input).map_err(fail)?.to_vec();
            let co = st.c.run(&st.input).map_err(fail)?.to_vec();
            st.out.add(&ro, &co);
            for (a, b) in ro.chunks(classes).zip(co.chunks(classes)) {
                st.total += 1;
                st.agree += (argmax(a) == argmax(b)) as usize;
            }
            for (k, (ri, ci)) in ref_ids.iter().zip(&cand_ids).enumerate() {
                let (Some(ri), Some(ci)) = (ri, ci) else { continue };
                let (Some(rt), Some(ct)) = (st.r.tensor(*ri), st.c.tensor(*ci)) else { continue };
                if rt.dims != ct.dims || rt.layout != ct.layout {
                    continue;
                }
                st.layer[k].add(&rt.to_f32(), &ct.to_f32());
            }
            pb.inc(1);
            Ok(())
        },
        |st| (st.layer, st.out, st.agree, st.total),
    );
    pb.finish_and_clear();
    let states = states?;
    let mut layer = vec![ErrorSum::default(); layers.len()];
    let mut out = ErrorSum::default();
    let (mut agree, mut total) = (0, 0);
    for (l, o, a, t) in &states {
        for (acc, b) in layer.iter_mut().zip(l) {
            acc.merge(b);
        }
        out.merge(o);
        agree += a;
        total += t;
    }
    let mut rows: Vec<Row> = layers
        .iter()
        .zip(&layer)
        .map(|(l, e)| Row {
            name: l.name.clone(),
            op: Some(l.op),
            precision: l.precision,
            sqnr_db: e.sqnr_db(),
            rel_l2: e.rel_l2(),
            agreement: f32::NAN,
        })
        .collect();
    let agreement = if total == 0 { 1.0 } else { agree as f32 / total as f32 };
    rows.push(Row {
        name: "output".into(),
        op: None,
        precision: FP32,
        sqnr_db: out.sqnr_db(),
        rel_l2: out.rel_l2(),
        agreement,
    });
    Ok(Report { rows, images: images.len(), predictions: total, agreeing: agree })
}
