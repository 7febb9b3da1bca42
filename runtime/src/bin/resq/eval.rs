//! `resq eval MODEL --images DIR`: accuracy (top-1/top-5 against folder labels) over a folder
//! of images, and agreement with a second model run on the same inputs.

use crate::args::{self, Spec};
use crate::json::Json;
use crate::util::InputGeometry;
use crate::{classify, imageio, util, CliError};
use resq::{Model, Session};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const HELP: &str = "\
Usage: resq eval MODEL --images DIR [options]

Runs MODEL on every image (.png, .jpg, .jpeg, any case) under DIR, recursively, in sorted path
order. Each image is decoded and preprocessed exactly as `resq classify` does. Prints how many
images were evaluated, top-1 and top-5 accuracy (with --labels-from-dirs), images per second,
and with --compare the top-1 agreement of the two models and how far apart their outputs are.

Options:
  --images DIR          the folder of images (required)
  --labels-from-dirs    the class of an image is the name of the folder holding it: one of the
                        model's labels (or of --labels FILE), or a class index \"0\", \"1\", ...
  --labels FILE         class names, one per line, instead of the labels stored in MODEL
  --compare OTHER       also run OTHER (e.g. the fp32 model) on the same input tensors (MODEL's
                        preprocessing); prints its accuracy, the share of images where both
                        models' top-1 class is the same, and the mean relative L2 distance
                        |MODEL - OTHER| / |OTHER| of the raw outputs (logits), OTHER being the
                        reference
  --include PATTERNS    only use images whose file name matches one of the comma-separated
                        PATTERNS (`*` = any run of characters, `?` = one character)
  --exclude PATTERNS    skip images whose file name matches one of PATTERNS
  --exclude-range A-B   skip images whose file stem is a whole number in A..=B, e.g.
                        `--exclude-range 950-999` skips 0950.jpg .. 0999.jpg
  --limit N             evaluate only the first N images left after the filters
  --threads N           worker threads (default 0 = one per physical core)
  --isa TIER            highest kernel tier to use (generic, avx2, avx512, neon, neon-dot, ...)
  --json                print one JSON object instead of text
  -h, --help            show this help

An image that cannot be decoded is reported on stderr, skipped and counted as unreadable;
the command fails only when no image could be evaluated. Top-5 is top-K with K = min(5,
classes). With a batch-N model, images are run N at a time (the last batch zero-padded).
";

const SPEC: Spec = Spec {
    command: "eval",
    flags: &["--labels-from-dirs", "--json"],
    options: &[
        "--images",
        "--labels",
        "--compare",
        "--include",
        "--exclude",
        "--exclude-range",
        "--limit",
        "--threads",
        "--isa",
    ],
};

/// File name extensions taken as images (compared case-insensitively).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Deepest folder nesting walked under DIR (guards against symlink loops).
const MAX_DEPTH: usize = 32;
/// Images decoded per round before the models run on them.
const CHUNK: usize = 64;

fn usage(msg: String) -> CliError {
    CliError::Usage { command: SPEC.command.into(), msg }
}

pub fn main(argv: &[OsString]) -> Result<(), CliError> {
    let p = args::parse(argv, &SPEC)?;
    if p.help {
        return util::print_stdout(HELP);
    }
    p.expect_positional(1, "MODEL")?;
    let Some(dir) = p.path("--images") else {
        return Err(usage("missing --images DIR".into()));
    };
    let filter = Filter {
        include: p.text("--include")?.map(patterns).transpose()?,
        exclude: p.text("--exclude")?.map(patterns).transpose()?.unwrap_or_default(),
        exclude_range: p.text("--exclude-range")?.map(parse_range).transpose()?,
    };
    let limit = p.usize_in("--limit", usize::MAX, 1, usize::MAX)?;
    let opts = util::session_options(&p)?;
    let cfg = Config {
        model: util::model_arg(&p)?.to_path_buf(),
        compare: p.path("--compare"),
        labels_file: p.path("--labels"),
        dir,
        labels_from_dirs: p.flag("--labels-from-dirs"),
        filter,
        limit,
        json: p.flag("--json"),
    };
    eval(&cfg, opts)
}

struct Config {
    model: PathBuf,
    compare: Option<PathBuf>,
    labels_file: Option<PathBuf>,
    dir: PathBuf,
    labels_from_dirs: bool,
    filter: Filter,
    limit: usize,
    json: bool,
}

/// Which file names are used.
#[derive(Debug, Default)]
struct Filter {
    include: Option<Vec<String>>,
    exclude: Vec<String>,
    exclude_range: Option<(u64, u64)>,
}

impl Filter {
    fn keeps(&self, name: &str) -> bool {
        if let Some(inc) = &self.include {
            if !inc.iter().any(|p| glob_match(p, name)) {
                return false;
            }
        }
        if self.exclude.iter().any(|p| glob_match(p, name)) {
            return false;
        }
        if let Some((lo, hi)) = self.exclude_range {
            let stem = Path::new(name).file_stem().and_then(|s| s.to_str()).unwrap_or("");
            // Digits only (no sign); a number too large for u64 is above any range end.
            if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(v) = stem.parse::<u64>() {
                    if (lo..=hi).contains(&v) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// Comma-separated glob patterns; empty ones are a usage error.
fn patterns(text: &str) -> Result<Vec<String>, CliError> {
    let v: Vec<String> = text.split(',').map(|s| s.trim().to_owned()).collect();
    if v.iter().any(String::is_empty) {
        return Err(usage(format!("empty pattern in '{text}' (patterns are separated by commas)")));
    }
    Ok(v)
}

/// `A-B` with A <= B, whole numbers.
fn parse_range(text: &str) -> Result<(u64, u64), CliError> {
    let bad = || usage(format!("--exclude-range expects A-B with whole numbers A <= B, got '{text}'"));
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// `*` matches any run of characters (also none), `?` exactly one; everything else itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was and which name position it currently absorbs up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Every image file under `dir` (recursively, following symlinks, skipping names that start
/// with '.'), sorted by path.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    fn visit(d: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
        if depth > MAX_DEPTH {
            return Err(CliError::Failed(format!("{}: folders nested deeper than {MAX_DEPTH} levels", d.display())));
        }
        let entries =
            std::fs::read_dir(d).map_err(|e| CliError::Failed(format!("{}: cannot list: {e}", d.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| CliError::Failed(format!("{}: cannot list: {e}", d.display())))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let meta = std::fs::metadata(&path)
                .map_err(|e| CliError::Failed(format!("{}: cannot read: {e}", path.display())))?;
            if meta.is_dir() {
                visit(&path, depth + 1, out)?;
            } else if meta.is_file() && is_image(&path) {
                out.push(path);
            }
        }
        Ok(())
    }
    let meta = std::fs::metadata(dir).map_err(|e| CliError::Failed(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(CliError::Failed(format!("{}: not a folder (--images expects a folder)", dir.display())));
    }
    let mut out = Vec::new();
    visit(dir, 0, &mut out)?;
    out.sort();
    Ok(out)
}

/// The class index of every image from the name of the folder holding it.
fn labels_from_dirs(dir: &Path, images: &[PathBuf], labels: &[String]) -> Result<Vec<usize>, CliError> {
    let mut classes = Vec::with_capacity(images.len());
    let mut unknown = BTreeSet::new();
    for img in images {
        let parent = img.parent().unwrap_or(dir);
        if parent == dir {
            return Err(CliError::Failed(format!(
                "{}: with --labels-from-dirs every image must be inside a class folder under {}",
                img.display(),
                dir.display()
            )));
        }
        let name = parent.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let class = labels.iter().position(|l| *l == name).or_else(|| {
            let digits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
            name.parse::<usize>().ok().filter(|&i| digits && i < labels.len())
        });
        match class {
            Some(c) => classes.push(c),
            None => {
                unknown.insert(name);
            }
        }
    }
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.into_iter().map(|n| format!("'{n}'")).collect();
        let known = labels.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
        let more = if labels.len() > 12 { ", ..." } else { "" };
        return Err(CliError::Failed(format!(
            "{}: folder name(s) {} match no class: expected one of the {} labels ({known}{more}) or an index 0..{}",
            dir.display(),
            names.join(", "),
            labels.len(),
            labels.len() - 1
        )));
    }
    Ok(classes)
}

/// One model under evaluation.
struct Runner<'m> {
    path: PathBuf,
    session: Session<'m>,
    geom: InputGeometry,
    classes: usize,
    input: Vec<f32>,
    /// Outputs of the current chunk, `classes` per image.
    logits: Vec<f32>,
    seconds: f64,
}

impl<'m> Runner<'m> {
    fn new(path: &Path, model: &'m Model, opts: resq::Options) -> Result<Runner<'m>, CliError> {
        let failed = |msg: String| CliError::Failed(format!("{}: {msg}", path.display()));
        let geom = util::input_geometry(&model.info()).map_err(failed)?;
        let out_len = model.output_len();
        if out_len == 0 || out_len % geom.batch != 0 {
            return Err(failed(format!("output of {out_len} values cannot be split into {} rows", geom.batch)));
        }
        let session = model.session(opts).map_err(|e| util::failed_at(path, e))?;
        Ok(Runner {
            path: path.to_path_buf(),
            session,
            geom,
            classes: out_len / geom.batch,
            input: vec![0f32; model.input_len()],
            logits: Vec::new(),
            seconds: 0.0,
        })
    }

    /// Runs the `n` NCHW samples in `samples` (`n * sample` values) in batches of the model's
    /// batch size and leaves their outputs in `self.logits`.
    fn run(&mut self, samples: &[f32], sample: usize, n: usize) -> Result<(), CliError> {
        let g = self.geom;
        self.logits.clear();
        let mut done = 0;
        while done < n {
            let take = g.batch.min(n - done);
            self.input.fill(0.0);
            for slot in 0..take {
                let src = &samples[(done + slot) * sample..(done + slot + 1) * sample];
                let dst = &mut self.input[slot * sample..(slot + 1) * sample];
                if g.nhwc {
                    util::nchw_to_nhwc(src, dst, g.channels, g.height, g.width);
                } else {
                    dst.copy_from_slice(src);
                }
            }
            let start = Instant::now();
            let out = self.session.run(&self.input).map_err(|e| util::failed_at(&self.path, e))?;
            self.seconds += start.elapsed().as_secs_f64();
            self.logits.extend_from_slice(&out[..take * self.classes]);
            done += take;
        }
        Ok(())
    }
}

/// Correct-answer counters of one model.
#[derive(Default)]
struct Hits {
    top1: usize,
    top5: usize,
}

impl Hits {
    fn add(&mut self, row: &[f32], class: usize, k: usize) {
        let best = util::top_k(row, k);
        self.top1 += usize::from(best.first() == Some(&class));
        self.top5 += usize::from(best.contains(&class));
    }
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// `n/of = 12.34%`.
fn ratio(n: usize, of: usize) -> String {
    format!("{n}/{of} = {:.2}%", pct(n, of))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// |a - b| / |b| in f64; 0 when both are zero, infinite when only `b` is.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut r) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        d += (x - y) * (x - y);
        r += y * y;
    }
    if d == 0.0 {
        0.0
    } else if r == 0.0 {
        f64::INFINITY
    } else {
        (d / r).sqrt()
    }
}

fn eval(cfg: &Config, opts: resq::Options) -> Result<(), CliError> {
    let model = util::open_model(&cfg.model)?;
    let info = model.info();
    let mut image_input = imageio::ImageInput::new(&cfg.model, &info)?;
    let other = cfg.compare.as_deref().map(util::open_model).transpose()?;

    let mut main = Runner::new(&cfg.model, &model, opts.clone())?;
    let classes = main.classes;
    let labels = classify::class_labels(&info, cfg.labels_file.as_deref(), classes)?;
    let mut cmp = match (&other, cfg.compare.as_deref()) {
        (Some(m), Some(path)) => {
            let r = Runner::new(path, m, opts)?;
            let (a, b) = (main.geom, r.geom);
            if (a.channels, a.height, a.width) != (b.channels, b.height, b.width) {
                return Err(CliError::Failed(format!(
                    "{}: takes {}x{}x{} inputs, {} takes {}x{}x{}: they cannot run on the same images",
                    path.display(),
                    b.channels,
                    b.height,
                    b.width,
                    cfg.model.display(),
                    a.channels,
                    a.height,
                    a.width
                )));
            }
            if r.classes != classes {
                return Err(CliError::Failed(format!(
                    "{}: {} classes, but {} has {classes}",
                    path.display(),
                    r.classes,
                    cfg.model.display()
                )));
            }
            if m.info().preprocess != info.preprocess {
                eprintln!(
                    "resq eval: note: the preprocessing stored in {} differs from {}'s; both models get {}'s",
                    path.display(),
                    cfg.model.display(),
                    cfg.model.display()
                );
            }
            Some(r)
        }
        _ => None,
    };

    let found = walk(&cfg.dir)?;
    let mut images: Vec<PathBuf> = found
        .iter()
        .filter(|p| cfg.filter.keeps(&p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()))
        .cloned()
        .collect();
    let excluded = found.len() - images.len();
    images.truncate(cfg.limit);
    if images.is_empty() {
        return Err(CliError::Failed(format!(
            "{}: no images to evaluate ({} image files found, {excluded} excluded by the filters)",
            cfg.dir.display(),
            found.len()
        )));
    }
    let truth = if cfg.labels_from_dirs { Some(labels_from_dirs(&cfg.dir, &images, &labels)?) } else { None };

    let k = classes.min(5);
    let sample = image_input.sample_len();
    let batch_lcm = {
        let (a, b) = (main.geom.batch, cmp.as_ref().map_or(1, |r| r.geom.batch));
        a / gcd(a, b) * b
    };
    let chunk = batch_lcm * CHUNK.div_ceil(batch_lcm);
    let mut samples = vec![0f32; chunk * sample];
    let mut ids = Vec::with_capacity(chunk);
    let (mut hits, mut cmp_hits) = (Hits::default(), Hits::default());
    let mut per_class = vec![(0usize, 0usize); classes];
    let (mut agree, mut rel_sum, mut evaluated) = (0usize, 0f64, 0usize);
    let mut unreadable: Vec<PathBuf> = Vec::new();
    let progress = !cfg.json && std::io::stderr().is_terminal();
    let start = Instant::now();

    for (c, chunk_paths) in images.chunks(chunk).enumerate() {
        ids.clear();
        for (i, path) in chunk_paths.iter().enumerate() {
            match image_input.load_nchw(path) {
                Ok(x) => {
                    let slot = ids.len();
                    samples[slot * sample..(slot + 1) * sample].copy_from_slice(x);
                    ids.push(c * chunk + i);
                }
                Err(CliError::Failed(msg)) => {
                    eprintln!("resq eval: warning: {msg} (skipped)");
                    unreadable.push(path.clone());
                }
                Err(e) => return Err(e),
            }
        }
        let n = ids.len();
        main.run(&samples, sample, n)?;
        if let Some(r) = cmp.as_mut() {
            r.run(&samples, sample, n)?;
        }
        for (j, &id) in ids.iter().enumerate() {
            let row = &main.logits[j * classes..(j + 1) * classes];
            if let Some(t) = &truth {
                let before = hits.top1;
                hits.add(row, t[id], k);
                per_class[t[id]].0 += 1;
                per_class[t[id]].1 += hits.top1 - before;
            }
            if let Some(r) = &cmp {
                let other_row = &r.logits[j * classes..(j + 1) * classes];
                if let Some(t) = &truth {
                    cmp_hits.add(other_row, t[id], k);
                }
                agree += usize::from(util::top_k(row, 1) == util::top_k(other_row, 1));
                rel_sum += rel_l2(row, other_row);
            }
        }
        evaluated += n;
        if progress {
            eprint!("\r{}/{} images", (c * chunk + chunk_paths.len()), images.len());
        }
    }
    if progress {
        eprintln!();
    }
    let seconds = start.elapsed().as_secs_f64();
    if evaluated == 0 {
        return Err(CliError::Failed(format!(
            "{}: none of the {} images could be read (see the warnings above)",
            cfg.dir.display(),
            unreadable.len()
        )));
    }
    let per_s = |s: f64| if s > 0.0 { evaluated as f64 / s } else { 0.0 };
    let ms_per = |s: f64| s * 1e3 / evaluated as f64;
    let mean_rel = rel_sum / evaluated as f64;

    let text = if cfg.json {
        let count = |n: usize| {
            Json::obj([("correct", Json::uint(n)), ("percent", Json::Num(util::round_dp(pct(n, evaluated), 4)))])
        };
        let run_info = |r: &Runner| {
            Json::obj([
                ("path", Json::str(r.path.display().to_string())),
                ("isa", Json::str(r.session.isa().name())),
                ("threads", Json::uint(r.session.threads())),
                ("ms_per_image", Json::Num(util::round_ms(ms_per(r.seconds)))),
            ])
        };
        let mut fields = vec![
            ("model", run_info(&main)),
            ("precision", Json::str(info.precision.name())),
            ("images_dir", Json::str(cfg.dir.display().to_string())),
            ("found", Json::uint(found.len())),
            ("excluded", Json::uint(excluded)),
            ("unreadable", Json::uint(unreadable.len())),
            ("evaluated", Json::uint(evaluated)),
        ];
        if truth.is_some() {
            fields.push(("top1", count(hits.top1)));
            fields.push(("top5", count(hits.top5)));
            fields.push(("top_k", Json::uint(k)));
        }
        if let (Some(r), Some(m)) = (&cmp, &other) {
            fields.push(("compare", run_info(r)));
            fields.push(("compare_precision", Json::str(m.info().precision.name())));
            if truth.is_some() {
                fields.push(("compare_top1", count(cmp_hits.top1)));
                fields.push(("compare_top5", count(cmp_hits.top5)));
            }
            fields.push((
                "agreement",
                Json::obj([
                    ("count", Json::uint(agree)),
                    ("percent", Json::Num(util::round_dp(pct(agree, evaluated), 4))),
                ]),
            ));
            fields.push(("mean_rel_l2", Json::Num(mean_rel)));
        }
        fields.push(("seconds", Json::Num(util::round_dp(seconds, 4))));
        fields.push(("images_per_s", Json::Num(util::round_dp(per_s(seconds), 2))));
        if truth.is_some() {
            let rows = per_class.iter().enumerate().filter(|(_, (n, _))| *n > 0).map(|(i, &(n, ok))| {
                Json::obj([
                    ("index", Json::uint(i)),
                    ("label", Json::str(&labels[i])),
                    ("images", Json::uint(n)),
                    ("top1", Json::uint(ok)),
                ])
            });
            fields.push(("per_class", Json::Arr(rows.collect())));
        }
        fields.push((
            "unreadable_files",
            Json::Arr(unreadable.iter().map(|p| Json::str(p.display().to_string())).collect()),
        ));
        Json::obj(fields).pretty()
    } else {
        let mut s = String::new();
        let describe = |r: &Runner, precision: &str| {
            let t = r.session.threads();
            format!(
                "{} ({precision}, {}, {t} thread{})",
                r.path.display(),
                r.session.isa(),
                if t == 1 { "" } else { "s" }
            )
        };
        let _ = writeln!(s, "model:       {}", describe(&main, info.precision.name()));
        if let (Some(r), Some(m)) = (&cmp, &other) {
            let _ = writeln!(s, "compare:     {}", describe(r, m.info().precision.name()));
        }
        let _ = writeln!(
            s,
            "images:      {evaluated} evaluated under {} ({} found, {excluded} excluded, {} unreadable)",
            cfg.dir.display(),
            found.len(),
            unreadable.len()
        );
        if truth.is_some() {
            let _ = writeln!(s, "top-1:       {}", ratio(hits.top1, evaluated));
            let _ = writeln!(s, "top-{k}:       {}", ratio(hits.top5, evaluated));
        }
        if cmp.is_some() {
            if truth.is_some() {
                let _ = writeln!(s, "compare top-1: {}", ratio(cmp_hits.top1, evaluated));
                let _ = writeln!(s, "compare top-{k}: {}", ratio(cmp_hits.top5, evaluated));
            }
            let _ = writeln!(s, "agreement:   {} (same top-1 class)", ratio(agree, evaluated));
            let _ = writeln!(s, "rel-l2:      {mean_rel:.6} (mean |MODEL - OTHER| / |OTHER| of the outputs)");
        }
        let mut speed = format!(
            "speed:       {:.1} images/s end to end ({seconds:.2} s); model {:.3} ms/image",
            per_s(seconds),
            ms_per(main.seconds)
        );
        if let Some(r) = &cmp {
            let _ = write!(speed, ", compare {:.3} ms/image", ms_per(r.seconds));
        }
        let _ = writeln!(s, "{speed}");
        s
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(util::write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        for (p, n, want) in [
            ("*", "", true),
            ("*", "a.jpg", true),
            ("*.jpg", "0950.jpg", true),
            ("*.jpg", "0950.png", false),
            ("09??.jpg", "0950.jpg", true),
            ("09??.jpg", "950.jpg", false),
            ("095?.jpg", "0950.jpg", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("a*", "b", false),
            ("", "", true),
            ("", "a", false),
            ("?", "é", true),
            ("**x", "abx", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p:?} vs {n:?}");
        }
    }

    #[test]
    fn filters_select_the_held_out_images() {
        let f = Filter { exclude_range: Some((950, 999)), ..Filter::default() };
        assert!(f.keeps("0949.jpg") && !f.keeps("0950.jpg") && !f.keeps("0999.jpg") && f.keeps("1000.jpg"));
        assert!(f.keeps("x0950.jpg") && f.keeps("99999999999999999999999.jpg"));
        let f = Filter { include: Some(vec!["*.png".into()]), exclude: vec!["b*".into()], exclude_range: None };
        assert!(f.keeps("a.png") && !f.keeps("b.png") && !f.keeps("a.jpg"));
        assert_eq!(parse_range("950-999").unwrap(), (950, 999));
        assert!(parse_range("999-950").is_err() && parse_range("950").is_err() && parse_range("a-b").is_err());
        assert!(patterns("a,,b").is_err());
        assert_eq!(patterns("*.png, x?").unwrap(), vec!["*.png".to_owned(), "x?".to_owned()]);
    }

    #[test]
    fn relative_l2() {
        assert_eq!(rel_l2(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((rel_l2(&[3.0, 4.0], &[0.0, 5.0]) - (9.0f64 + 1.0).sqrt() / 5.0).abs() < 1e-12);
        assert!(rel_l2(&[1.0], &[0.0]).is_infinite());
    }
}
