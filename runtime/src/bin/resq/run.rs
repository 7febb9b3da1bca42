//! `resq run MODEL --input IN.npy --output OUT.npy`: run a batch of prepared inputs.

use crate::args::{self, Spec};
use crate::{util, CliError};
use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

pub const HELP: &str = "\
Usage: resq run MODEL --input IN.npy --output OUT.npy [options]

Reads IN.npy, a float32 array [N, C, H, W] of already preprocessed inputs (N >= 1; C, H and
W must equal the model's input, in the model's input layout as `resq inspect` shows it),
runs one inference per row (or per group of rows for a model with batch B > 1; N must then
be a multiple of B) and writes the outputs as float32 [N, K...] to OUT.npy.

Options:
  --input FILE     input .npy (float32, C order)
  --output FILE    output .npy (overwritten)
  --threads N      worker threads (default 0 = one per physical core)
  --isa TIER       highest kernel tier to use (generic, avx2, avx512, neon, neon-dot, ...)
  -h, --help       show this help
";

const SPEC: Spec = Spec { command: "run", flags: &[], options: &["--input", "--output", "--threads", "--isa"] };

pub fn main(argv: &[OsString]) -> Result<(), CliError> {
    let p = args::parse(argv, &SPEC)?;
    if p.help {
        return util::print_stdout(HELP);
    }
    let usage = |msg: &str| CliError::Usage { command: SPEC.command.into(), msg: msg.into() };
    p.expect_positional(1, "MODEL")?;
    let input_path = p.path("--input").ok_or_else(|| usage("missing --input IN.npy"))?;
    let output_path = p.path("--output").ok_or_else(|| usage("missing --output OUT.npy"))?;
    let opts = util::session_options(&p)?;
    let model_path = util::model_arg(&p)?;
    run(model_path, &input_path, &output_path, opts)
}

fn run(model_path: &Path, input_path: &Path, output_path: &Path, opts: resq::Options) -> Result<(), CliError> {
    let model = util::open_model(model_path)?;
    let info = model.info();
    let failed_model = |msg: String| CliError::Failed(format!("{}: {msg}", model_path.display()));
    let geom = util::input_geometry(&info).map_err(failed_model)?;

    let (shape, data) = resq::npy::read_f32(input_path).map_err(|e| util::failed_at(input_path, e))?;
    let failed_input = |msg: String| CliError::Failed(format!("{}: {msg}", input_path.display()));
    let sample_dims = &info.input_dims[1..];
    if shape.len() != 4 || shape[0] == 0 || shape[1..] != *sample_dims {
        let want = format!("[N, {}]", util::shape_str(sample_dims).trim_matches(['[', ']']));
        return Err(failed_input(format!(
            "input shape is {}, the model expects {want} (N >= 1){}",
            util::shape_str(&shape),
            if geom.nhwc { ", NHWC" } else { "" }
        )));
    }
    let n = shape[0];
    if n % geom.batch != 0 {
        return Err(failed_input(format!("{n} rows cannot be split into runs of the model's batch {}", geom.batch)));
    }
    let per_run_in = model.input_len();
    let per_run_out = model.output_len();
    let runs = n / geom.batch;
    if data.len() != runs * per_run_in {
        return Err(failed_input(format!("holds {} values, expected {}", data.len(), runs * per_run_in)));
    }
    // Output rows: [N] followed by the model's output dims without its batch dim.
    let out_dims = &info.output_shape;
    let rest: &[usize] = match out_dims.first() {
        Some(&b) if b == geom.batch => &out_dims[1..],
        _ if geom.batch == 1 => out_dims,
        _ => {
            return Err(failed_model(format!(
                "output shape {} does not start with the batch {}",
                util::shape_str(out_dims),
                geom.batch
            )))
        }
    };
    let mut out_shape = vec![n];
    out_shape.extend_from_slice(rest);

    let mut session = model.session(opts).map_err(|e| failed_model(e.to_string()))?;
    let mut outputs = Vec::with_capacity(runs * per_run_out);
    let start = Instant::now();
    for chunk in data.chunks_exact(per_run_in) {
        let y = session.run(chunk).map_err(|e| failed_model(e.to_string()))?;
        outputs.extend_from_slice(y);
    }
    let secs = start.elapsed().as_secs_f64();
    resq::npy::write_f32(output_path, &out_shape, &outputs).map_err(|e| util::failed_at(output_path, e))?;
    util::print_stdout(&format!(
        "wrote {} {} ({runs} run{} in {:.1} ms, isa {}, {} thread{})\n",
        output_path.display(),
        util::shape_str(&out_shape),
        if runs == 1 { "" } else { "s" },
        secs * 1e3,
        session.isa(),
        session.threads(),
        if session.threads() == 1 { "" } else { "s" },
    ))
}
