//! `resq bench MODEL`: time inferences on a fixed pseudo-random input.

use crate::args::{self, Spec};
use crate::json::Json;
use crate::{util, CliError};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::Instant;

pub const HELP: &str = "\
Usage: resq bench MODEL [options]

Runs MODEL on a fixed pseudo-random input (seeded, the same every time): WARMUP untimed runs,
then ITERS timed runs, and prints min, median, p90 (nearest rank), mean and max latency in
milliseconds with the kernel tier and thread count used.

Options:
  --iters N        timed runs (default 20)
  --warmup N       untimed runs first (default 3)
  --threads N      worker threads (default 0 = one per physical core)
  --isa TIER       highest kernel tier to use (generic, avx2, avx512, neon, neon-dot, ...)
  --per-layer      also time every op (Session::run_profiled): per-op median ms, share of
                   the summed op medians, and GFLOP/s = 2 * MACs / median time
  --json           print one JSON object (keys: model, isa, threads, iters, warmup, batch,
                   min_ms, median_ms, p90_ms, mean_ms, max_ms[, per_layer])
  -h, --help       show this help
";

const SPEC: Spec = Spec {
    command: "bench",
    flags: &["--per-layer", "--json"],
    options: &["--iters", "--warmup", "--threads", "--isa"],
};

/// Longest op name shown in the text table (longer ones are cut in the middle).
const NAME_WIDTH: usize = 48;

/// Seed of the benchmark input.
const SEED: u64 = 0x5EED_2E50;

pub fn main(argv: &[OsString]) -> Result<(), CliError> {
    let p = args::parse(argv, &SPEC)?;
    if p.help {
        return util::print_stdout(HELP);
    }
    p.expect_positional(1, "MODEL")?;
    let iters = p.usize_in("--iters", 20, 1, 1_000_000)?;
    let warmup = p.usize_in("--warmup", 3, 0, 1_000_000)?;
    let opts = util::session_options(&p)?;
    let path = util::model_arg(&p)?;
    let per_layer = p.flag("--per-layer");

    let model = util::open_model(path)?;
    let failed = |e: resq::Error| CliError::Failed(format!("{}: {e}", path.display()));
    let mut session = model.session(opts).map_err(failed)?;
    let mut rng = util::Rng::new(SEED);
    let input: Vec<f32> = (0..model.input_len()).map(|_| rng.next_f32()).collect();
    let ops = model.ops();

    for _ in 0..warmup {
        session.run(&input).map_err(failed)?;
    }
    let mut totals = Vec::with_capacity(iters);
    // per_op[op][iter], seconds.
    let mut per_op = vec![Vec::with_capacity(iters); if per_layer { ops.len() } else { 0 }];
    let mut scratch = vec![0f64; ops.len()];
    for _ in 0..iters {
        let start = Instant::now();
        if per_layer {
            session.run_profiled(&input, &mut scratch).map_err(failed)?;
        } else {
            session.run(&input).map_err(failed)?;
        }
        totals.push(start.elapsed().as_secs_f64());
        for (acc, &t) in per_op.iter_mut().zip(&scratch) {
            acc.push(t);
        }
    }
    let Some(st) = util::stats(&totals) else {
        return Err(CliError::Failed("no timed runs".into()));
    };
    let info = model.info();
    let batch = info.input_dims[0];

    // Per op: median ms over the timed runs, its share of the summed medians, GFLOP/s.
    let op_medians: Vec<f64> = per_op.iter().map(|t| util::stats(t).map_or(0.0, |s| s.median_ms)).collect();
    let op_sum: f64 = op_medians.iter().sum();
    let share = |ms: f64| if op_sum > 0.0 { ms / op_sum } else { 0.0 };
    let gflops = |macs: u64, ms: f64| if ms > 0.0 { 2.0 * macs as f64 / (ms * 1e-3) / 1e9 } else { 0.0 };

    let text = if p.flag("--json") {
        let mut fields = vec![
            ("model", Json::str(path.display().to_string())),
            ("isa", Json::str(session.isa().name())),
            ("threads", Json::uint(session.threads())),
            ("iters", Json::uint(iters)),
            ("warmup", Json::uint(warmup)),
            ("batch", Json::uint(batch)),
            ("min_ms", Json::Num(util::round_ms(st.min_ms))),
            ("median_ms", Json::Num(util::round_ms(st.median_ms))),
            ("p90_ms", Json::Num(util::round_ms(st.p90_ms))),
            ("mean_ms", Json::Num(util::round_ms(st.mean_ms))),
            ("max_ms", Json::Num(util::round_ms(st.max_ms))),
        ];
        if per_layer {
            let rows = ops.iter().zip(&op_medians).enumerate().map(|(i, (op, &ms))| {
                Json::obj([
                    ("index", Json::uint(i)),
                    ("kind", Json::str(op.kind.to_string())),
                    ("algo", Json::str(op.algo)),
                    ("name", Json::str(&op.name)),
                    ("median_ms", Json::Num(util::round_ms(ms))),
                    ("share", Json::Num(util::round_dp(share(ms), 6))),
                    ("macs", Json::Num(op.macs as f64)),
                    ("gflops", Json::Num(util::round_dp(gflops(op.macs, ms), 3))),
                ])
            });
            fields.push(("per_layer", Json::Arr(rows.collect())));
        }
        Json::obj(fields).pretty()
    } else {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} iters after {} warm-up, isa {}, {} thread{}, batch {}",
            path.display(),
            iters,
            warmup,
            session.isa(),
            session.threads(),
            if session.threads() == 1 { "" } else { "s" },
            batch
        );
        let _ = writeln!(
            s,
            "  min {:.3} ms   median {:.3} ms   p90 {:.3} ms   mean {:.3} ms   max {:.3} ms",
            st.min_ms, st.median_ms, st.p90_ms, st.mean_ms, st.max_ms
        );
        if st.median_ms > 0.0 {
            let _ = writeln!(s, "  throughput {:.1} images/s at the median", batch as f64 * 1e3 / st.median_ms);
        }
        if per_layer {
            let kw = ops.iter().map(|o| o.kind.to_string().len()).max().unwrap_or(4).max(4);
            let aw = ops.iter().map(|o| o.algo.len()).max().unwrap_or(4).max(4);
            let names: Vec<String> = ops.iter().map(|o| util::abbreviate(&o.name, NAME_WIDTH)).collect();
            let nw = names.iter().map(|n| n.chars().count()).max().unwrap_or(4).max(4);
            let _ = writeln!(
                s,
                "\n  {:>4}  {:<kw$}  {:<aw$}  {:<nw$}  {:>10}  {:>6}  {:>8}",
                "#", "kind", "algo", "name", "median ms", "share", "GFLOP/s"
            );
            for (i, ((op, name), &ms)) in ops.iter().zip(&names).zip(&op_medians).enumerate() {
                let _ = writeln!(
                    s,
                    "  {i:>4}  {:<kw$}  {:<aw$}  {name:<nw$}  {ms:>10.4}  {:>5.1}%  {:>8.2}",
                    op.kind,
                    op.algo,
                    share(ms) * 100.0,
                    gflops(op.macs, ms)
                );
            }
            let _ = writeln!(s, "  sum of op medians {op_sum:.3} ms");
        }
        s
    };
    util::print_stdout(&text)
}
