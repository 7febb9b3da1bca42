//! A minimal application that links the `resq` library, as one shipped on a Raspberry Pi would:
//! it opens a converted model, prepares an RGB frame with the model's own preprocessing, runs
//! it a few times and prints the best label and the latency.
//!
//! Frames come from the app (a camera, a decoder); to stay free of image crates this example
//! reads a binary PPM file (`P6`, 8 bits), which any converter writes
//! (`convert photo.jpg photo.ppm`, `ffmpeg -i photo.jpg photo.ppm`).
//!
//! ```sh
//! cargo run --release -p resq --example embed -- resnet20.resq cat.ppm
//! # on a PC, for a Pi (see the README's Raspberry Pi section for the linker setting):
//! cargo build --release -p resq --example embed --target aarch64-unknown-linux-gnu
//! ```
//!
//! An application's own `Cargo.toml` needs only `resq = { path = "...", default-features =
//! false }`: the `cli` feature (on by default) is what pulls in the image decoders for the
//! `resq` tool.

use resq::{Model, Options};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} MODEL.resq IMAGE.ppm", args.first().map_or("embed", String::as_str));
        return ExitCode::from(2);
    }
    match run(&args[1], &args[2]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(model_path: &str, image_path: &str) -> Result<(), String> {
    let model = Model::open(model_path).map_err(|e| e.to_string())?;
    let info = model.info();
    let bytes = std::fs::read(image_path).map_err(|e| format!("{image_path}: {e}"))?;
    let (width, height, rgb) = parse_ppm(&bytes).map_err(|e| format!("{image_path}: {e}"))?;

    // Everything the hot loop needs is allocated here, once.
    let mut input = vec![0f32; model.input_len()];
    resq::preprocess::prepare_rgb8(rgb, width, height, &info.preprocess, &mut input).map_err(|e| e.to_string())?;
    let mut session = model.session(Options::default()).map_err(|e| e.to_string())?;

    let mut times = Vec::with_capacity(10);
    let mut best = (0, f32::NEG_INFINITY);
    for _ in 0..10 {
        let t = Instant::now();
        let scores = session.run(&input).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        best = scores
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |b, (i, s)| if s > b.1 { (i, s) } else { b });
    }
    times.sort_by(f64::total_cmp);
    let label = info.labels.get(best.0).map_or_else(|| format!("class {}", best.0), Clone::clone);
    println!("{label}  (score {:.4})", best.1);
    println!(
        "median {:.3} ms over {} runs, kernel tier {}, {} threads",
        times[times.len() / 2],
        times.len(),
        session.isa(),
        session.threads()
    );
    Ok(())
}

/// `(width, height, pixels)` of a binary 8-bit PPM (`P6`): the header is `P6`, width, height
/// and maxval 255 as ASCII numbers separated by whitespace (comments start with `#`), then
/// exactly one whitespace byte and `width * height * 3` bytes of RGB.
fn parse_ppm(b: &[u8]) -> Result<(usize, usize, &[u8]), String> {
    if !b.starts_with(b"P6") {
        return Err("not a binary PPM (P6) file".into());
    }
    let mut pos = 2;
    let mut fields = [0usize; 3];
    for (i, field) in fields.iter_mut().enumerate() {
        loop {
            match b.get(pos) {
                Some(c) if c.is_ascii_whitespace() => pos += 1,
                Some(b'#') => {
                    while b.get(pos).is_some_and(|&c| c != b'\n') {
                        pos += 1;
                    }
                }
                _ => break,
            }
        }
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        let name = ["width", "height", "maxval"][i];
        let text = std::str::from_utf8(&b[start..pos]).unwrap_or("");
        *field = text.parse().map_err(|_| format!("PPM header: bad {name} at byte {start}"))?;
    }
    let [w, h, maxval] = fields;
    if maxval != 255 || w == 0 || h == 0 {
        return Err(format!("PPM header: {w}x{h} maxval {maxval} (need a non-empty 8-bit image)"));
    }
    if !b.get(pos).is_some_and(u8::is_ascii_whitespace) {
        return Err(format!("PPM header: no whitespace after maxval at byte {pos}"));
    }
    let data = &b[pos + 1..];
    let need = w.checked_mul(h).and_then(|n| n.checked_mul(3)).ok_or("PPM header: size overflows")?;
    if data.len() < need {
        return Err(format!("PPM data: {} bytes, {w}x{h} RGB needs {need}", data.len()));
    }
    Ok((w, h, &data[..need]))
}
