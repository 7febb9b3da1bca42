//! Helpers shared by the subcommands: model opening, session options, labels, output,
//! probabilities, statistics and a seeded random generator.

use crate::args::Parsed;
use crate::CliError;
use resq::{InputLayout, Isa, Model, ModelInfo, Options};
use std::io::Write;
use std::path::Path;

/// Writes `s` to stdout, mapping a closed pipe to [`CliError::BrokenPipe`].
pub fn print_stdout(s: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes()).and_then(|()| out.flush()).map_err(write_error)
}

/// Maps an error writing stdout.
pub fn write_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::BrokenPipe
    } else {
        CliError::Failed(format!("writing to stdout: {e}"))
    }
}

/// A failure about `path`: the error's message, prefixed with the path unless it names it.
pub fn failed_at(path: &Path, e: impl std::fmt::Display) -> CliError {
    let msg = e.to_string();
    let shown = path.display().to_string();
    if msg.contains(&shown) {
        CliError::Failed(msg)
    } else {
        CliError::Failed(format!("{shown}: {msg}"))
    }
}

/// Opens and validates a model; the message always names the file.
pub fn open_model(path: &Path) -> Result<Model, CliError> {
    Model::open(path).map_err(|e| failed_at(path, e))
}

/// The first positional argument as the model path.
pub fn model_arg(p: &Parsed) -> Result<&Path, CliError> {
    p.positional
        .first()
        .map(Path::new)
        .ok_or_else(|| CliError::Usage { command: p.command.to_owned(), msg: "missing MODEL".into() })
}

/// Session options from `--threads N` (0 = one per physical core) and `--isa TIER`.
pub fn session_options(p: &Parsed) -> Result<Options, CliError> {
    let threads = p.usize_in("--threads", 0, 0, 1024)?;
    let mut opts = Options::default().threads(threads);
    if let Some(t) = p.text("--isa")? {
        let isa = Isa::parse(t).ok_or_else(|| CliError::Usage {
            command: p.command.to_owned(),
            msg: format!("--isa: unknown tier '{t}' (known: generic, avx2, avx512, neon, neon-dot, neon-dot-fp16)"),
        })?;
        opts = opts.max_isa(isa);
    }
    Ok(opts)
}

/// The model's per-run input: batch and one sample's channels/height/width, and whether the
/// logical input layout is NHWC (else NCHW).
#[derive(Clone, Copy, Debug)]
pub struct InputGeometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub nhwc: bool,
}

/// Reads [`InputGeometry`] from the model's metadata.
pub fn input_geometry(info: &ModelInfo) -> Result<InputGeometry, String> {
    let d = info.input_dims;
    let nhwc = is_nhwc(info);
    let (c, h, w) = if nhwc { (d[3], d[1], d[2]) } else { (d[1], d[2], d[3]) };
    if d.contains(&0) {
        return Err(format!("input dims {} contain a zero", shape_str(&d)));
    }
    Ok(InputGeometry { batch: d[0], channels: c, height: h, width: w, nhwc })
}

/// True when the model's logical input layout is NHWC.
pub fn is_nhwc(info: &ModelInfo) -> bool {
    info.input_layout == InputLayout::Nhwc
}

/// `src` `[C, H, W]` into `dst` `[H, W, C]`.
pub fn nchw_to_nhwc(src: &[f32], dst: &mut [f32], c: usize, h: usize, w: usize) {
    for ci in 0..c {
        for y in 0..h {
            for x in 0..w {
                dst[(y * w + x) * c + ci] = src[(ci * h + y) * w + x];
            }
        }
    }
}

/// Class labels from a text file: one per line, `\r\n` accepted, trailing empty lines ignored.
pub fn read_labels(path: &Path) -> Result<Vec<String>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Failed(format!("{}: cannot read labels: {e}", path.display())))?;
    let mut labels: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_owned()).collect();
    while labels.last().is_some_and(|l| l.trim().is_empty()) {
        labels.pop();
    }
    if labels.is_empty() {
        return Err(CliError::Failed(format!("{}: the labels file has no labels", path.display())));
    }
    Ok(labels)
}

/// `row` as probabilities: returned as is when it already is a distribution (all values >= 0,
/// sum within 1e-3 of 1), else its softmax (max subtracted, sums in f64).
pub fn probabilities(row: &[f32]) -> Vec<f32> {
    let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
    if row.iter().all(|&v| v >= 0.0) && (sum - 1.0).abs() <= 1e-3 {
        return row.to_vec();
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / total) as f32).collect()
}

/// Indices of the `k` largest values, largest first (ties: lower index first; NaN last).
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)),
        }
    });
    idx.truncate(k);
    idx
}

/// Summary statistics of timings (seconds in, milliseconds out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub min_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

/// Min, median (mean of the two middle values for an even count), p90 (nearest rank:
/// the `ceil(0.9 n)`-th smallest), mean and max. `None` for an empty slice.
pub fn stats(seconds: &[f64]) -> Option<Stats> {
    if seconds.is_empty() {
        return None;
    }
    let mut s: Vec<f64> = seconds.iter().map(|x| x * 1e3).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    let p90_rank = (9 * n).div_ceil(10).max(1);
    Some(Stats {
        min_ms: s[0],
        median_ms: median,
        p90_ms: s[p90_rank - 1],
        mean_ms: s.iter().sum::<f64>() / n as f64,
        max_ms: s[n - 1],
    })
}

/// xorshift64* with a fixed seed: reproducible pseudo-random inputs without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// `name` shortened to at most `max` characters by cutting its middle ("ab…yz"); op names
/// of fused nodes get long, and their start (layer) and end (last fused op) say the most.
pub fn abbreviate(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max || max < 3 {
        return name.to_owned();
    }
    let head = (max - 1) / 2;
    let tail = max - 1 - head;
    let mut s: String = name.chars().take(head).collect();
    s.push('…');
    s.extend(name.chars().skip(n - tail));
    s
}

/// `x` rounded to `digits` decimals, so JSON shows `12.3456` rather than binary noise.
pub fn round_dp(x: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (x * k).round() / k
}

/// Milliseconds rounded to 100 ns.
pub fn round_ms(ms: f64) -> f64 {
    round_dp(ms, 4)
}

/// `[1, 3, 32, 32]`.
pub fn shape_str(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

/// 1234567 -> "1,234,567".
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in human units: "1.05 MiB".
pub fn bytes_human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_pass_distributions_through_and_softmax_logits() {
        let p = [0.2f32, 0.5, 0.3];
        assert_eq!(probabilities(&p), p.to_vec());
        let q = probabilities(&[1.0, 2.0, 3.0]);
        let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|x| x.exp()).collect();
        let s: f64 = e.iter().sum();
        for (a, b) in q.iter().zip(&e) {
            assert!((f64::from(*a) - b / s).abs() < 1e-6);
        }
        // Sums to 1 but has a negative value: logits, not probabilities.
        let r = probabilities(&[1.5, -0.5, 0.0]);
        assert!(r.iter().all(|&v| v > 0.0) && r[0] > r[2] && r[2] > r[1]);
        // Huge logits stay finite.
        let h = probabilities(&[1000.0, 0.0]);
        assert!((h[0] - 1.0).abs() < 1e-6 && h[1] >= 0.0);
    }

    #[test]
    fn top_k_orders_and_breaks_ties_by_index() {
        assert_eq!(top_k(&[0.1, 0.7, 0.2, 0.7], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[f32::NAN, 0.5, 0.1], 2), vec![1, 2]);
        assert_eq!(top_k(&[0.3], 5), vec![0]);
    }

    #[test]
    fn stats_median_p90_mean() {
        let s = stats(&[0.004, 0.001, 0.003, 0.002]).unwrap();
        assert!((s.min_ms - 1.0).abs() < 1e-9);
        assert!((s.median_ms - 2.5).abs() < 1e-9);
        assert!((s.p90_ms - 4.0).abs() < 1e-9);
        assert!((s.mean_ms - 2.5).abs() < 1e-9);
        let t: Vec<f64> = (1..=10).map(|i| f64::from(i) / 1e3).collect();
        let s = stats(&t).unwrap();
        assert!((s.median_ms - 5.5).abs() < 1e-9 && (s.p90_ms - 9.0).abs() < 1e-9 && (s.max_ms - 10.0).abs() < 1e-9);
        assert!((stats(&[0.007]).unwrap().p90_ms - 7.0).abs() < 1e-9);
        assert!(stats(&[]).is_none());
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(123), "123");
        assert_eq!(bytes_human(512), "512 B");
        assert_eq!(bytes_human(1536), "1.50 KiB");
        assert_eq!(shape_str(&[1, 10]), "[1, 10]");
        assert_eq!(abbreviate("short", 10), "short");
        assert_eq!(abbreviate("/layer1/conv/Conv+/layer1/Relu", 11), "/laye…/Relu");
        assert_eq!(abbreviate("/layer1/conv/Conv+/layer1/Relu", 11).chars().count(), 11);
        assert_eq!(round_ms(30.768427000000003).to_string(), "30.7684");
        let mut r = Rng::new(7);
        let v: Vec<f32> = (0..1000).map(|_| r.next_f32()).collect();
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(v.iter().any(|&x| x < -0.9) && v.iter().any(|&x| x > 0.9));
    }
}
