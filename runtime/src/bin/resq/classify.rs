//! `resq classify MODEL IMAGE...`: decode, preprocess as the model's metadata says, run,
//! print the top classes with their probabilities.

use crate::args::{self, Parsed, Spec};
use crate::json::Json;
use crate::{imageio, util, CliError};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

pub const HELP: &str = "\
Usage: resq classify MODEL IMAGE... [options]

Decodes each IMAGE (PNG or JPEG; grey and RGBA become RGB), resizes, crops and normalises it
as MODEL's metadata says (see `resq inspect`), runs the model and prints the top classes as
`label  probability`, one per line (with several images, each block starts with the image
path). The output is turned into probabilities with a softmax unless it already is one.
Preprocessing matches torchvision with PIL (Pillow's bilinear resize, bit for bit); EXIF
orientation is ignored, as PIL does.

Options:
  --top K          how many classes to print per image (default 5)
  --labels FILE    class names, one per line (default: the labels stored in MODEL;
                   without any, the class index is printed)
  --json           print one JSON object: {\"model\", \"images\": [{\"image\", \"top\": [{\"index\",
                   \"label\", \"prob\"}]}]}
  --threads N      worker threads (default 0 = one per physical core)
  --isa TIER       highest kernel tier to use (generic, avx2, avx512, neon, neon-dot, ...)
  -h, --help       show this help
";

const SPEC: Spec =
    Spec { command: "classify", flags: &["--json"], options: &["--top", "--labels", "--threads", "--isa"] };

pub fn main(argv: &[OsString]) -> Result<(), CliError> {
    let p = args::parse(argv, &SPEC)?;
    if p.help {
        return util::print_stdout(HELP);
    }
    if p.positional.len() < 2 {
        let what = if p.positional.is_empty() { "MODEL and IMAGE" } else { "IMAGE" };
        return Err(CliError::Usage { command: SPEC.command.into(), msg: format!("missing {what}") });
    }
    let top = p.usize_in("--top", 5, 1, 1_000_000)?;
    let opts = util::session_options(&p)?;
    let labels_file = p.path("--labels");
    classify(&p, top, labels_file.as_deref(), opts)
}

fn classify(p: &Parsed, top: usize, labels_file: Option<&Path>, opts: resq::Options) -> Result<(), CliError> {
    let model_path = util::model_arg(p)?;
    let images: Vec<&Path> = p.positional[1..].iter().map(Path::new).collect();
    let model = util::open_model(model_path)?;
    let info = model.info();
    let failed = |msg: String| CliError::Failed(format!("{}: {msg}", model_path.display()));

    let mut image_input = imageio::ImageInput::new(model_path, &info)?;
    let geom = image_input.geom;
    let out_len = model.output_len();
    if out_len == 0 || out_len % geom.batch != 0 {
        return Err(failed(format!("output of {out_len} values cannot be split into {} rows", geom.batch)));
    }
    let classes = out_len / geom.batch;
    let labels = class_labels(&info, labels_file, classes)?;
    let top = top.min(classes);

    let mut session = model.session(opts).map_err(|e| failed(e.to_string()))?;
    let sample = image_input.sample_len();
    let mut input = vec![0f32; model.input_len()];
    let json = p.flag("--json");
    let many = images.len() > 1;
    let mut results = Vec::new();
    let mut out = std::io::stdout().lock();

    for chunk in images.chunks(geom.batch) {
        input.fill(0.0);
        for (slot, img_path) in chunk.iter().enumerate() {
            image_input.load(img_path, &mut input[slot * sample..(slot + 1) * sample])?;
        }
        let output = session.run(&input).map_err(|e| failed(e.to_string()))?;
        for (slot, img_path) in chunk.iter().enumerate() {
            let probs = util::probabilities(&output[slot * classes..(slot + 1) * classes]);
            let best = util::top_k(&probs, top);
            if json {
                let rows = best.iter().map(|&i| {
                    Json::obj([
                        ("index", Json::uint(i)),
                        ("label", Json::str(&labels[i])),
                        ("prob", Json::f32(probs[i])),
                    ])
                });
                results.push(Json::obj([
                    ("image", Json::str(img_path.display().to_string())),
                    ("top", Json::Arr(rows.collect())),
                ]));
                continue;
            }
            let width = best.iter().map(|&i| labels[i].chars().count()).max().unwrap_or(0);
            let indent = if many { "  " } else { "" };
            let mut text = String::new();
            if many {
                let _ = writeln!(text, "{}", img_path.display());
            }
            for &i in &best {
                let _ = writeln!(text, "{indent}{:<width$}  {:.4}", labels[i], probs[i]);
            }
            out.write_all(text.as_bytes()).map_err(util::write_error)?;
        }
    }
    if json {
        let doc = Json::obj([("model", Json::str(model_path.display().to_string())), ("images", Json::Arr(results))]);
        out.write_all(doc.pretty().as_bytes()).map_err(util::write_error)?;
    }
    out.flush().map_err(util::write_error)
}

/// The class names: from `labels_file` (one per line; its count must be `classes`), else the
/// labels stored in the model when their count fits, else the class indices "0", "1", ...
pub fn class_labels(
    info: &resq::ModelInfo,
    labels_file: Option<&Path>,
    classes: usize,
) -> Result<Vec<String>, CliError> {
    Ok(match labels_file {
        Some(f) => {
            let l = util::read_labels(f)?;
            if l.len() != classes {
                return Err(CliError::Failed(format!(
                    "{}: {} labels, but the model has {classes} classes",
                    f.display(),
                    l.len()
                )));
            }
            l
        }
        None if info.labels.len() == classes => info.labels.clone(),
        None => (0..classes).map(|i| i.to_string()).collect(),
    })
}
