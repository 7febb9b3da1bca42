//! `resq-convert INPUT -o OUT.resq [options]`: converts an ONNX ResNet, a PyTorch checkpoint
//! (`.pth`/`.pt`/`.th`/`.tar`) or a safetensors file into a `.resq` file. Errors exit with
//! status 1, usage errors with status 2.

use clap::Parser;
use resq_convert::{
    convert_bytes_with_summary, parse_preset, preset_name, write_atomic, CalibrationMethod, CalibrationOptions,
    ConvertError, ConvertOptions, FrozenTensor, Packing, Precision, Summary,
};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "resq-convert",
    version,
    about = "Convert a trained ResNet (ONNX, PyTorch checkpoint or safetensors) into a .resq file"
)]
struct Cli {
    /// The model to convert (only read, never modified): `.onnx`, a PyTorch checkpoint
    /// (`.pth`, `.pt`, `.th`, `.tar`; zip or legacy format) or `.safetensors`.
    input: PathBuf,
    /// Where to write the .resq file (written atomically).
    #[arg(short, long)]
    output: PathBuf,
    /// Precision: fp32; fp16 (f16 weights, f32 activations); int8 (int8 weights and
    /// activations, needs --calibrate; --keep-float / --accuracy-budget make it mixed).
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "fp16", "int8"])]
    precision: String,
    /// Calibration images for int8: a folder of PNG/JPEG files (subfolders searched), decoded
    /// and preprocessed as the model's metadata says. With fp16: images for the accuracy report.
    #[arg(long, value_name = "DIR")]
    calibrate: Option<PathBuf>,
    /// Calibration images to use, picked evenly over the sorted files; one in five is held
    /// out to measure the result (per-layer report, --accuracy-budget).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    calibration_count: u32,
    /// How activation ranges are chosen: minmax, percentile (99.99 %), entropy (KL), mse
    /// (least quantisation error; the best measured on ResNet-20).
    #[arg(long, value_name = "METHOD", default_value = "mse", value_parser = ["minmax", "percentile", "entropy", "mse"])]
    calibration_method: String,
    /// int8: Conv2d/Linear layers (node names, comma-separated) kept in float (f16 weights).
    #[arg(long, value_name = "LAYER,...", value_delimiter = ',')]
    keep_float: Vec<String>,
    /// int8: largest allowed loss of top-1 agreement with fp32 on the held-out calibration
    /// images, in percentage points; the most sensitive layers move to fp16 until it holds.
    #[arg(long, value_name = "PTS")]
    accuracy_budget: Option<f64>,
    /// Worker threads for calibration (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Class labels, one per line; their count must equal the model's number of classes.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Preprocessing preset (default: guessed from the input size).
    #[arg(long, value_parser = ["imagenet", "cifar", "raw255", "none"])]
    preprocess: Option<String>,
    /// Model name (default: the input file stem).
    #[arg(long)]
    name: Option<String>,
    /// Bind graph input NAME to the tensor in FILE (.npy float32 or .pb TensorProto).
    #[arg(long, value_name = "NAME=FILE")]
    freeze: Vec<String>,
    /// Value of a symbolic batch dim.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65536))]
    batch: u32,
    /// Store plain OHWI / [N, K] weights run by the direct scalar reference kernels instead of
    /// the packed layouts of the fast kernels (for checking the fast path; much slower).
    #[arg(long)]
    reference_kernels: bool,
    /// Checkpoints: the architecture (resnet20/32/44/56/110 for CIFAR, resnet18/34/50/101/152
    /// for torchvision); default: inferred from the tensor names and shapes.
    #[arg(long)]
    arch: Option<String>,
    /// Checkpoints: input size `H` or `HxW` (default 32 for CIFAR, 224 for ImageNet).
    #[arg(long, value_name = "H[xW]")]
    input_size: Option<String>,
}

fn parse_input_size(s: &str) -> Result<[usize; 2], ConvertError> {
    let bad = || ConvertError::Other(format!("--input-size '{s}': expected H or HxW, e.g. 224 or 32x32"));
    let (h, w) = s.split_once(['x', 'X']).unwrap_or((s, s));
    let h: usize = h.trim().parse().map_err(|_| bad())?;
    let w: usize = w.trim().parse().map_err(|_| bad())?;
    if h == 0 || w == 0 || h > 8192 || w > 8192 {
        return Err(bad());
    }
    Ok([h, w])
}

fn options(cli: &Cli) -> Result<ConvertOptions, ConvertError> {
    let precision = match cli.precision.as_str() {
        "fp16" => Precision::Fp16,
        "int8" => Precision::Int8,
        _ => Precision::Fp32,
    };
    let labels = match &cli.labels {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConvertError::Io { path: p.clone(), source })?;
            Some(text.lines().map(|l| l.trim_end_matches('\r').to_string()).filter(|l| !l.is_empty()).collect())
        }
    };
    let mut freeze = Vec::new();
    for spec in &cli.freeze {
        let (name, file) = spec
            .split_once('=')
            .filter(|(n, f)| !n.is_empty() && !f.is_empty())
            .ok_or_else(|| ConvertError::Other(format!("--freeze '{spec}': expected NAME=FILE")))?;
        freeze.push((name.to_string(), FrozenTensor::from_file(file.as_ref())?));
    }
    if let Some(b) = cli.accuracy_budget {
        if !(b.is_finite() && (0.0..=100.0).contains(&b)) {
            return Err(ConvertError::Other(format!("--accuracy-budget {b}: expected points between 0 and 100")));
        }
    }
    let calibration = CalibrationOptions {
        dir: cli.calibrate.clone(),
        count: cli.calibration_count as usize,
        method: CalibrationMethod::parse(&cli.calibration_method).unwrap_or_default(),
        keep_float: cli.keep_float.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        accuracy_budget: cli.accuracy_budget,
        threads: cli.threads,
        progress: std::io::stderr().is_terminal(),
    };
    Ok(ConvertOptions {
        calibration,
        precision,
        labels,
        preprocess: cli.preprocess.as_deref().and_then(parse_preset),
        name: cli.name.clone(),
        freeze,
        batch: cli.batch as usize,
        packing: if cli.reference_kernels { Packing::Reference } else { Packing::Fast },
        arch: cli.arch.clone(),
        input_size: cli.input_size.as_deref().map(parse_input_size).transpose()?,
    })
}

fn summary_text(s: &Summary, out: &std::path::Path) -> String {
    let ops: Vec<String> = s.ops.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let total: usize = s.ops.values().sum();
    let pre = match s.preprocess {
        Some(p) if s.preprocess_guessed => {
            format!("{} (guessed from the input size; set --preprocess)", preset_name(p))
        }
        Some(p) => preset_name(p).to_string(),
        None => "none".into(),
    };
    let st = &s.stats;
    let precision = match (s.precision, s.precision_code) {
        (Precision::Int8, 3) => format!("mixed int8 + fp16: {} kept in float", s.kept_float.join(", ")),
        (p, _) => p.name().to_string(),
    };
    format!(
        "Wrote {} ({} bytes, {precision}): model '{}' from {}; input {:?} NCHW f32, output {:?}; {total} ops ({}); \
         {} parameters ({:.2} MB as packed for the kernels); folded {} constant nodes, {} BatchNorm into convs ({} as ChannelAffine), \
         fused {} residual adds, {} activations, {} biases; removed {} identity/merged nodes; preprocessing {pre}.",
        out.display(),
        s.file_size,
        s.name,
        s.source,
        s.input_dims,
        s.output_dims,
        ops.join(", "),
        s.param_count,
        s.param_bytes as f64 / 1e6,
        st.folded_nodes,
        st.bn_folded,
        st.bn_affine,
        st.residual_fused,
        st.act_fused,
        st.bias_fused,
        st.removed,
    )
}

fn run(cli: &Cli) -> Result<(), ConvertError> {
    if let (Ok(a), Ok(b)) = (cli.input.canonicalize(), cli.output.canonicalize()) {
        if a == b {
            return Err(ConvertError::Other(format!("{}: the output would overwrite the input", cli.output.display())));
        }
    }
    let opts = options(cli)?;
    let bytes = std::fs::read(&cli.input).map_err(|source| ConvertError::Io { path: cli.input.clone(), source })?;
    let (out, summary) =
        convert_bytes_with_summary(&bytes, &cli.input.to_string_lossy(), &opts).map_err(|e| match e {
            ConvertError::Decode { detail, .. } => {
                ConvertError::Decode { what: cli.input.display().to_string(), detail }
            }
            other => other,
        })?;
    write_atomic(&cli.output, &out)?;
    for line in &summary.log {
        println!("{line}");
    }
    if let Some(r) = &summary.report {
        print!("{}", r.table());
    }
    println!("{}", summary_text(&summary, &cli.output));
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resq-convert: error: {e}");
            ExitCode::from(1)
        }
    }
}
