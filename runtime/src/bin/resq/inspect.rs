//! `resq inspect MODEL [--json]`: metadata, preprocessing, op table and sizes.

use crate::args::{self, Spec};
use crate::json::Json;
use crate::{util, CliError};
use resq::format::PreprocessPreset;
use resq::{Model, ModelInfo, Preprocess};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

pub const HELP: &str = "\
Usage: resq inspect MODEL [--json]

Validates MODEL and shows its name, source, producer, precision, input shape and layout,
preprocessing, labels, output shape, every op (index, kind, source node name, input and
output shapes, multiply-accumulates, parameter bytes) and the totals: parameter bytes,
MACs, file size and the activation arena a session allocates.

Options:
  --json       print one JSON object instead of text
  -h, --help   show this help
";

/// Longest op name shown in the text table (longer ones are cut in the middle).
const NAME_WIDTH: usize = 48;

const SPEC: Spec = Spec { command: "inspect", flags: &["--json"], options: &[] };

pub fn main(argv: &[OsString]) -> Result<(), CliError> {
    let p = args::parse(argv, &SPEC)?;
    if p.help {
        return util::print_stdout(HELP);
    }
    p.expect_positional(1, "MODEL")?;
    let path = util::model_arg(&p)?;
    let model = util::open_model(path)?;
    let text = if p.flag("--json") { to_json(path, &model).pretty() } else { to_text(path, &model) };
    util::print_stdout(&text)
}

pub fn preset_name(p: PreprocessPreset) -> &'static str {
    match p {
        PreprocessPreset::None => "none",
        PreprocessPreset::Imagenet => "imagenet",
        PreprocessPreset::Cifar => "cifar",
        PreprocessPreset::Raw255 => "raw255",
    }
}

fn floats(v: &[f32]) -> String {
    let inner: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

fn describe_preprocess(p: &Preprocess) -> String {
    if p.preset == PreprocessPreset::None {
        return "none (inputs are fed as given; `resq classify` refuses images)".into();
    }
    let geometry = if p.resize_shorter > 0 {
        format!("resize shorter side to {}, centre crop {}x{}", p.resize_shorter, p.height, p.width)
    } else {
        format!("resize to {}x{}", p.height, p.width)
    };
    format!(
        "{}: {geometry}, {}, x * {}, mean {}, std {}",
        preset_name(p.preset),
        if p.channel_order_bgr { "BGR" } else { "RGB" },
        p.scale,
        floats(&p.mean),
        floats(&p.std)
    )
}

fn layout_name(info: &ModelInfo) -> &'static str {
    if util::is_nhwc(info) {
        "NHWC"
    } else {
        "NCHW"
    }
}

fn shapes(list: &[Vec<usize>]) -> String {
    let v: Vec<String> = list.iter().map(|s| util::shape_str(s)).collect();
    v.join(" ")
}

fn to_text(path: &Path, model: &Model) -> String {
    let info = model.info();
    let ops = model.ops();
    let mut s = String::new();
    let _ = writeln!(s, "{}", path.display());
    let mut field = |k: &str, v: String| {
        let _ = writeln!(s, "  {k:<11} {v}");
    };
    field("name", info.name.clone());
    field("source", info.source.clone());
    field("producer", info.producer.clone());
    field("precision", info.precision.name().to_string());
    field("input", format!("{} {} f32", util::shape_str(&info.input_dims), layout_name(&info)));
    field("preprocess", describe_preprocess(&info.preprocess));
    let labels = match info.labels.len() {
        0 => "none (class indices are shown)".to_string(),
        n => {
            let shown: Vec<&str> = info.labels.iter().take(5).map(String::as_str).collect();
            format!("{n}: {}{}", shown.join(", "), if n > 5 { ", ..." } else { "" })
        }
    };
    field("labels", labels);
    field("output", format!("{} f32", util::shape_str(&info.output_shape)));

    // Op table, columns sized to their contents.
    let header = ["#", "kind", "algo", "name", "inputs", "outputs", "MACs", "params"];
    let rows: Vec<[String; 8]> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            [
                i.to_string(),
                op.kind.to_string(),
                op.algo.to_string(),
                util::abbreviate(&op.name, NAME_WIDTH),
                shapes(&op.input_shapes),
                shapes(&op.output_shapes),
                util::thousands(op.macs),
                util::bytes_human(op.param_bytes),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 8]| {
        let mut l = String::from(" ");
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            // Numbers right-aligned, text left-aligned.
            if i == 0 || i >= 6 {
                let _ = write!(l, " {c:>w$}");
            } else {
                let _ = write!(l, " {c:<w$}");
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(s, "\n  ops (shapes are physical: activations NHWC, conv weights OHWI; `--json` has full names)");
    let _ = writeln!(s, "{}", line(header));
    for r in &rows {
        let _ = writeln!(s, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6], &r[7]].map(String::as_str)));
    }
    let macs: u64 = ops.iter().map(|o| o.macs).sum();
    let _ = writeln!(
        s,
        "\n  totals      {} ops, {} MACs, parameters {} ({} bytes), file {} ({} bytes), arena {} ({} bytes), \
         load-time heap {} ({} bytes)",
        ops.len(),
        util::thousands(macs),
        util::bytes_human(info.param_bytes),
        util::thousands(info.param_bytes),
        util::bytes_human(info.file_size),
        util::thousands(info.file_size),
        util::bytes_human(info.arena_bytes),
        util::thousands(info.arena_bytes),
        util::bytes_human(info.heap_bytes),
        util::thousands(info.heap_bytes),
    );
    let _ = writeln!(
        s,
        "  kernels     tier {} on this CPU (the best it supports that resq implements; RESQ_MAX_ISA or \
         --isa caps it)",
        resq::Isa::detect().implemented()
    );
    let report = model.layer_report();
    if !report.is_empty() {
        let _ = writeln!(s, "\n  quantization report (converter, against fp32 on held-out images)");
        let w = report.iter().map(|r| r.name.chars().count().min(NAME_WIDTH)).max().unwrap_or(5).max(5);
        let _ = writeln!(
            s,
            "    {:<w$}  {:<9} {:>9} {:>10} {:>10}",
            "layer", "precision", "SQNR dB", "rel L2", "agreement"
        );
        for r in report {
            let agree = if r.agreement.is_nan() { "-".to_string() } else { format!("{:.2}%", r.agreement * 100.0) };
            let _ = writeln!(
                s,
                "    {:<w$}  {:<9} {:>9.2} {:>10.2e} {:>10}",
                util::abbreviate(&r.name, NAME_WIDTH),
                r.precision.name(),
                r.sqnr_db,
                r.rel_l2,
                agree
            );
        }
    }
    s
}

fn to_json(path: &Path, model: &Model) -> Json {
    let info = model.info();
    let ops = model.ops();
    let pp = &info.preprocess;
    let shape_list = |l: &[Vec<usize>]| Json::Arr(l.iter().map(|s| Json::uints(s)).collect());
    let op_rows = ops.iter().enumerate().map(|(i, op)| {
        Json::obj([
            ("index", Json::uint(i)),
            ("kind", Json::str(op.kind.to_string())),
            ("name", Json::str(&op.name)),
            ("inputs", shape_list(&op.input_shapes)),
            ("outputs", shape_list(&op.output_shapes)),
            ("algo", Json::str(op.algo)),
            ("macs", Json::Num(op.macs as f64)),
            ("param_bytes", Json::Num(op.param_bytes as f64)),
        ])
    });
    let macs: u64 = ops.iter().map(|o| o.macs).sum();
    Json::obj([
        ("path", Json::str(path.display().to_string())),
        ("name", Json::str(&info.name)),
        ("source", Json::str(&info.source)),
        ("producer", Json::str(&info.producer)),
        ("precision", Json::str(info.precision.name())),
        ("input", Json::obj([("dims", Json::uints(&info.input_dims)), ("layout", Json::str(layout_name(&info)))])),
        (
            "preprocess",
            Json::obj([
                ("preset", Json::str(preset_name(pp.preset))),
                ("resize_shorter", Json::Int(i64::from(pp.resize_shorter))),
                ("height", Json::Int(i64::from(pp.height))),
                ("width", Json::Int(i64::from(pp.width))),
                ("channel_order", Json::str(if pp.channel_order_bgr { "BGR" } else { "RGB" })),
                ("scale", Json::f32(pp.scale)),
                ("mean", Json::Arr(pp.mean.iter().map(|&v| Json::f32(v)).collect())),
                ("std", Json::Arr(pp.std.iter().map(|&v| Json::f32(v)).collect())),
            ]),
        ),
        ("num_labels", Json::uint(info.labels.len())),
        ("labels", Json::Arr(info.labels.iter().map(Json::str).collect())),
        ("output_shape", Json::uints(&info.output_shape)),
        ("ops", Json::Arr(op_rows.collect())),
        (
            "layer_report",
            Json::Arr(
                model
                    .layer_report()
                    .iter()
                    .map(|r| {
                        Json::obj([
                            ("name", Json::str(&r.name)),
                            ("op", r.op.map_or(Json::Num(f64::NAN), Json::uint)),
                            ("precision", Json::str(r.precision.name())),
                            ("sqnr_db", Json::f32(r.sqnr_db)),
                            ("rel_l2", Json::f32(r.rel_l2)),
                            ("agreement", Json::f32(r.agreement)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "totals",
            Json::obj([
                ("ops", Json::uint(ops.len())),
                ("macs", Json::Num(macs as f64)),
                ("param_bytes", Json::Num(info.param_bytes as f64)),
                ("file_size", Json::Num(info.file_size as f64)),
                ("arena_bytes", Json::Num(info.arena_bytes as f64)),
                ("heap_bytes", Json::Num(info.heap_bytes as f64)),
            ]),
        ),
    ])
}
