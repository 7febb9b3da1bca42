//! Calibration images: finding, selecting, decoding and preprocessing them, and running the
//! fp32 model over them to observe every activation's range.
//!
//! Images are the PNG and JPEG files under the calibration folder (searched recursively,
//! sorted by path). When the folder holds more than `--calibration-count N` images, N are
//! picked evenly spaced over the sorted list (so a folder of class subfolders is sampled
//! across all classes). Every fifth picked image (indices 4, 9, 14, ...) is **held out**:
//! it is not used to choose ranges, only to measure the int8 model against fp32 (the layer
//! report and `--accuracy-budget`). With fewer than five picked images nothing can be held
//! out and the report is measured on the calibration images themselves.
//!
//! Each image is decoded to RGB8 and preprocessed exactly as the model file's metadata says
//! (`resq::preprocess::prepare_rgb8`), as `resq classify` does.

use super::observe::{Method, TensorObserver};
use crate::error::ConvertError;
use indicatif::{ProgressBar, ProgressStyle};
use resq::{Model, Options};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Largest accepted image side, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest allocation the image decoder may make, in bytes.
pub const MAX_ALLOC: u64 = 1 << 30;
/// One picked image in this many is held out.
pub const HOLDOUT_EVERY: usize = 5;

/// The picked images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageSet {
    /// Used to choose the activation ranges.
    pub calibration: Vec<PathBuf>,
    /// Used only to measure the quantised model (may equal `calibration` for tiny sets).
    pub held_out: Vec<PathBuf>,
    /// Image files found in the folder.
    pub found: usize,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The PNG / JPEG files under `dir` (recursively, symlinks followed), sorted by path.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ConvertError::Io { path: p, source }
    };
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(ConvertError::Other(format!(
            "--calibrate {}: not a folder (give a folder of PNG or JPEG images)",
            dir.display()
        )));
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen_dirs = 0usize;
    while let Some(d) = stack.pop() {
        seen_dirs += 1;
        if seen_dirs > 100_000 {
            return Err(ConvertError::Other(format!("--calibrate {}: too many subfolders", dir.display())));
        }
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let path = entry.map_err(io(&d))?.path();
            // Follows symlinks; a broken link is skipped.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if m.is_file() && is_image(&path) => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Pick `count` images evenly spaced over `all` and split off the held-out ones (module docs).
pub fn select_images(all: &[PathBuf], count: usize) -> ImageSet {
    let n = count.min(all.len());
    let picked: Vec<PathBuf> = (0..n).map(|i| all[i * all.len() / n.max(1)].clone()).collect();
    if picked.len() < HOLDOUT_EVERY {
        return ImageSet { calibration: picked.clone(), held_out: picked, found: all.len() };
    }
    let (mut calibration, mut held_out) = (Vec::new(), Vec::new());
    for (i, p) in picked.into_iter().enumerate() {
        if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 {
            held_out.push(p);
        } else {
            calibration.push(p);
        }
    }
    ImageSet { calibration, held_out, found: all.len() }
}

/// Find and pick the images of `dir`; an error when there are none.
pub fn images(dir: &Path, count: usize) -> Result<ImageSet, ConvertError> {
    if count == 0 {
        return Err(ConvertError::Other("--calibration-count must be at least 1".into()));
    }
    let all = list_images(dir)?;
    if all.is_empty() {
        return Err(ConvertError::Other(format!(
            "--calibrate {}: no PNG or JPEG images found (searched subfolders too)",
            dir.display()
        )));
    }
    Ok(select_images(&all, count))
}

/// Decode an image file (format from its contents) into packed RGB8: `(pixels, width, height)`.
/// Grey, alpha and 16-bit images become 8-bit RGB (alpha dropped), as `resq classify` does.
pub fn decode_rgb8(path: &Path) -> Result<(Vec<u8>, usize, usize), ConvertError> {
    let fail = |what: String| ConvertError::Other(format!("calibration image {}: {what}", path.display()));
    let reader = image::ImageReader::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut reader = reader.with_guessed_format().map_err(|e| fail(format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(fail("not a recognised image file (PNG or JPEG expected)".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| fail(format!("cannot decode: {e}")))?;
    let rgb = img.into_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err(fail(format!("zero size ({w}x{h})")));
    }
    Ok((rgb.into_raw(), w, h))
}

/// Decode `path` and preprocess it as `model`'s metadata says into `out` (`model.input_len()`
/// values; a batch dim > 1 gets the image in every slot).
pub fn load_input(path: &Path, model: &Model, out: &mut [f32]) -> Result<(), ConvertError> {
    let info = model.info();
    if info.input_dims[1] != 3 {
        return Err(ConvertError::Other(format!(
            "calibration needs an image model (3 input channels); this one takes {:?}",
            info.input_dims
        )));
    }
    if info.preprocess.preset == resq::PreprocessPreset::None {
        return Err(ConvertError::Other(
            "calibration images need a preprocessing preset: pass --preprocess (imagenet, cifar or raw255)".into(),
        ));
    }
    let (rgb, w, h) = decode_rgb8(path)?;
    let one = out.len() / info.input_dims[0].max(1);
    let (first, rest) = out.split_at_mut(one);
    resq::preprocess::prepare_rgb8(&rgb, w, h, &info.preprocess, first)
        .map_err(|e| ConvertError::Other(format!("calibration image {}: {e}", path.display())))?;
    for chunk in rest.chunks_exact_mut(one) {
        chunk.copy_from_slice(first);
    }
    Ok(())
}

/// A progress bar on stderr (hidden when `show` is false or stderr is not a terminal).
pub fn progress_bar(len: usize, message: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:<28} [{bar:32}] {pos}/{len} images {elapsed_precise} (eta {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(message.to_string());
    pb
}

/// Worker threads for `images` images: `threads` (0 = the machine's parallelism), at most one
/// per image.
pub fn workers(threads: usize, images: usize) -> usize {
    let t = if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
    t.clamp(1, images.max(1))
}

/// Run `f(state, image index)` over `n` images on `workers` threads (image i on worker
/// i % workers); each worker builds its state with `init` and turns it into its result with
/// `finish` (results in worker order). The first error stops every worker.
pub fn for_each_image<S, R: Send>(
    n: usize,
    workers: usize,
    init: impl Fn() -> Result<S, ConvertError> + Sync,
    f: impl Fn(&mut S, usize) -> Result<(), ConvertError> + Sync,
    finish: impl Fn(S) -> R + Sync,
) -> Result<Vec<R>, ConvertError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = AtomicBool::new(false);
    let results: Vec<Result<R, ConvertError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|w| {
                let (init, f, finish, stop) = (&init, &f, &finish, &stop);
                scope.spawn(move || -> Result<R, ConvertError> {
                    let mut state = init()?;
                    for i in (w..n).step_by(workers.max(1)) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Err(e) = f(&mut state, i) {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(finish(state))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(ConvertError::Other("a calibration worker panicked".into()))))
            .collect()
    });
    results.into_iter().collect()
}

/// Observers of every activation (by tensor name) of the fp32 `model` over `images`, for
/// `method` (two passes for the histogram methods).
pub fn observe(
    model: &Model,
    images: &[PathBuf],
    method: Method,
    threads: usize,
    progress: bool,
) -> Result<HashMap<String, TensorObserver>, ConvertError> {
    let activations: Vec<(u32, String)> = model
        .tensors()
        .into_iter()
        .filter(|t| !t.constant && t.dtype == resq::format::DType::F32)
        .map(|t| (t.id, t.name))
        .collect();
    let mut observers: Vec<TensorObserver> = vec![TensorObserver::default(); activations.len()];
    let passes = if method.needs_histogram() { 2 } else { 1 };
    let nw = workers(threads, images.len());
    for pass in 0..passes {
        let msg = match (passes, pass) {
            (1, _) => format!("calibrating ({})", method.name()),
            (_, 0) => format!("calibrating ({}): ranges", method.name()),
            _ => format!("calibrating ({}): histograms", method.name()),
        };
        let pb = progress_bar(images.len(), &msg, progress);
        // Workers start from the (empty) state of this pass; their counts are summed.
        let start = observers.clone();
        let states = for_each_image(
            images.len(),
            nw,
            || {
                let session = model
                    .session(Options::default().threads(1).keep_intermediates(true))
                    .map_err(|e| ConvertError::Other(format!("calibration session: {e}")))?;
                Ok((session, start.clone(), vec![0f32; model.input_len()]))
            },
            |(session, obs, input), i| {
                load_input(&images[i], model, input)?;
                session
                    .run(input)
                    .map_err(|e| ConvertError::Other(format!("calibration image {}: {e}", images[i].display())))?;
                for (k, (id, _)) in activations.iter().enumerate() {
                    if let Some(t) = session.tensor(*id) {
                        obs[k].observe(&t.to_f32());
                    }
                }
                pb.inc(1);
                Ok(())
            },
            |(_, obs, _)| obs,
        );
        pb.finish_and_clear();
        let states = states?;
        // Merge the workers' observers.
        for (k, o) in observers.iter_mut().enumerate() {
            for w in &states {
                let wk = &w[k];
                match (&mut o.hist, &wk.hist) {
                    (Some(h), Some(wh)) => {
                        for (a, b) in h.bins.iter_mut().zip(&wh.bins) {
                            *a += b;
                        }
                    }
                    _ => {
                        o.range.min = o.range.min.min(wk.range.min);
                        o.range.max = o.range.max.max(wk.range.max);
                        o.range.count += wk.range.count;
                        o.range.non_finite += wk.range.non_finite;
                    }
                }
            }
        }
        if pass + 1 < passes {
            for o in &mut observers {
                o.start_histogram();
            }
        }
    }
    Ok(activations.into_iter().map(|(_, name)| name).zip(observers).collect())
}
