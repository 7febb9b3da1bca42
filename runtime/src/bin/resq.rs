//! `resq`: classify images, run tensors, inspect, benchmark and evaluate `.resq` models.
//!
//! Exit codes: 0 success, 1 failure (message on stderr naming the file), 2 usage error.

// A binary's root file looks for modules next to itself; ours live in resq/.
#[path = "resq/args.rs"]
mod args;
#[path = "resq/bench.rs"]
mod bench;
#[path = "resq/classify.rs"]
mod classify;
#[path = "resq/eval.rs"]
mod eval;
#[path = "resq/imageio.rs"]
mod imageio;
#[path = "resq/inspect.rs"]
mod inspect;
#[path = "resq/json.rs"]
mod json;
#[path = "resq/run.rs"]
mod run;
#[path = "resq/util.rs"]
mod util;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// Why a command stopped.
#[derive(Debug)]
pub enum CliError {
    /// Bad command line: exit 2 with a hint to `--help`.
    Usage { command: String, msg: String },
    /// The work failed (file missing, corrupt model, bad input): exit 1.
    Failed(String),
    /// Stdout was closed by the reader (e.g. `resq inspect m.resq | head`): stop quietly.
    BrokenPipe,
}

const USAGE: &str = "\
resq: run ResNet image classifiers converted to .resq (see resq-convert)

Usage:
  resq classify MODEL IMAGE... [--top K] [--labels FILE] [--json] [--threads N] [--isa TIER]
  resq run MODEL --input IN.npy --output OUT.npy [--threads N] [--isa TIER]
  resq inspect MODEL [--json]
  resq bench MODEL [--iters N] [--warmup N] [--threads N] [--isa TIER] [--per-layer] [--json]
  resq eval MODEL --images DIR [--labels-from-dirs] [--compare OTHER] [--exclude-range A-B]
            [--include P] [--exclude P] [--limit N] [--labels FILE] [--threads N] [--isa TIER] [--json]
  resq help [COMMAND]      resq COMMAND --help      resq --version

Commands:
  classify   decode images (PNG/JPEG), preprocess them as the model says, print the top classes
  run        run a batch of preprocessed inputs from an .npy file and write the outputs as .npy
  inspect    show a model's metadata, preprocessing, op table and sizes
  bench      time inferences on a fixed random input (min/median/p90/mean; per layer on request)
  eval       top-1/top-5 over a folder of images (classes from folder names), agreement with
             another model file, images/s

Environment:
  RESQ_MAX_ISA=generic|avx2|avx512|neon|neon-dot|neon-dot-fp16   cap the kernel tier

Exit status: 0 ok, 1 error (the message names the file), 2 usage error.
";

fn command_help(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "classify" => classify::HELP,
        "run" => run::HELP,
        "inspect" => inspect::HELP,
        "bench" => bench::HELP,
        "eval" => eval::HELP,
        _ => return None,
    })
}

fn dispatch(argv: &[OsString]) -> Result<(), CliError> {
    let Some(first) = argv.first() else {
        return Err(CliError::Usage { command: String::new(), msg: "no command given".into() });
    };
    let Some(cmd) = first.to_str() else {
        return Err(CliError::Usage { command: String::new(), msg: format!("unknown command {first:?}") });
    };
    let rest = &argv[1..];
    match cmd {
        "-h" | "--help" => util::print_stdout(USAGE),
        "-V" | "--version" => util::print_stdout(&format!("resq {}\n", env!("CARGO_PKG_VERSION"))),
        "help" => match rest.first().and_then(|c| c.to_str()) {
            None => util::print_stdout(USAGE),
            Some(c) => match command_help(c) {
                Some(h) => util::print_stdout(h),
                None => Err(CliError::Usage { command: String::new(), msg: format!("unknown command '{c}'") }),
            },
        },
        "classify" => classify::main(rest),
        "run" => run::main(rest),
        "inspect" => inspect::main(rest),
        "bench" => bench::main(rest),
        "eval" => eval::main(rest),
        other => Err(CliError::Usage { command: String::new(), msg: format!("unknown command '{other}'") }),
    }
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut err = std::io::stderr().lock();
    match dispatch(&argv) {
        Ok(()) | Err(CliError::BrokenPipe) => ExitCode::SUCCESS,
        Err(CliError::Usage { command, msg }) => {
            if command.is_empty() {
                let _ = writeln!(err, "resq: {msg}\n\n{USAGE}");
            } else {
                let _ = writeln!(err, "resq {command}: {msg}\nTry 'resq {command} --help'.");
            }
            ExitCode::from(2)
        }
        Err(CliError::Failed(msg)) => {
            let _ = writeln!(err, "resq: error: {msg}");
            ExitCode::from(1)
        }
    }
}
