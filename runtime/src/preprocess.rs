//! Turning decoded RGB8 images into model input tensors as the file metadata says.
//!
//! The pipeline is the one torchvision applies to PIL images, reproduced exactly so a model
//! sees the pixels it was evaluated with:
//!
//! 1. **Resize.** With `resize_shorter > 0` the shorter side becomes `resize_shorter` and the
//!    longer one `floor(resize_shorter * long / short)` (`transforms.Resize(int)`); with 0 the
//!    image is resized straight to the model's `height x width` (`Resize((h, w))`). Resampling
//!    is PIL's bilinear filter: a triangle kernel widened by the scale factor when downscaling
//!    (antialiasing), applied horizontally then vertically in 8-bit fixed point with
//!    [`PRECISION_BITS`] fractional bits and rounding to `u8` after each pass, as Pillow's
//!    `Resample.c` does, so outputs equal `Image.resize(..., BILINEAR)` bit for bit.
//! 2. **Centre crop** to `height x width` (`transforms.CenterCrop`): the offset is
//!    `round((size - crop) / 2)` with round-half-to-even; a side shorter than the crop is
//!    padded with zeros split as `(crop - size) / 2` before and the rest after.
//! 3. **Normalise**: channel order (RGB, or BGR where output channel 0 is blue), then
//!    `(v * scale - mean[c]) / std[c]` in `f32`, where `c` is the *output* (model) channel,
//!    written NCHW (`[3, height, width]`).
//!
//! Nothing here decodes image files: the `resq` CLI does that with the `image` crate.

use crate::{Error, Preprocess, Result};

/// Fractional bits of Pillow's fixed-point resampling coefficients (`32 - 8 - 2`).
pub const PRECISION_BITS: u32 = 22;

/// Largest image side accepted, in pixels (a sanity cap against absurd dimensions).
pub const MAX_SIDE: usize = 1 << 16;
/// Largest intermediate image the resize may build, in pixels (3 bytes each), so that a
/// hostile `resize_shorter` cannot make it allocate gigabytes.
pub const MAX_PIXELS: usize = 1 << 26;

fn err(msg: String) -> Error {
    Error::Preprocess(msg)
}

/// Resizes, crops and normalises one packed RGB8 image (`rgb.len() == width * height * 3`,
/// rows top to bottom) into `out_nchw` (`3 * p.height * p.width` f32, NCHW order).
///
/// Errors (never panics) when a size is zero or too large, a buffer has the wrong length,
/// or the parameters are unusable (non-finite scale/mean/std, zero std).
pub fn prepare_rgb8(rgb: &[u8], width: usize, height: usize, p: &Preprocess, out_nchw: &mut [f32]) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(err(format!("image has zero size ({width}x{height})")));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(err(format!("image is {width}x{height} pixels; sides above {MAX_SIDE} are not supported")));
    }
    let (out_w, out_h) = (p.width as usize, p.height as usize);
    if out_w == 0 || out_h == 0 {
        return Err(err(format!("model input size is zero ({out_w}x{out_h})")));
    }
    if out_w > MAX_SIDE || out_h > MAX_SIDE || p.resize_shorter as usize > MAX_SIDE {
        return Err(err(format!(
            "preprocessing sizes too large (input {out_w}x{out_h}, resize_shorter {})",
            p.resize_shorter
        )));
    }
    // u64: with sides up to MAX_SIDE these products overflow a 32-bit usize (armv7).
    let expected_in = width as u64 * height as u64 * 3;
    if rgb.len() as u64 != expected_in {
        return Err(err(format!(
            "RGB buffer has {} bytes, a {width}x{height} RGB8 image needs {expected_in}",
            rgb.len()
        )));
    }
    let expected_out = 3 * out_w as u64 * out_h as u64;
    if out_nchw.len() as u64 != expected_out {
        return Err(err(format!(
            "output buffer has {} values, a 3x{out_h}x{out_w} input needs {expected_out}",
            out_nchw.len()
        )));
    }
    if !p.scale.is_finite() {
        return Err(err(format!("scale {} is not finite", p.scale)));
    }
    for c in 0..3 {
        if !p.mean[c].is_finite() || !p.std[c].is_finite() || p.std[c] == 0.0 {
            return Err(err(format!(
                "channel {c}: mean {} / std {} unusable (std must be finite and nonzero)",
                p.mean[c], p.std[c]
            )));
        }
    }

    let (rw, rh) = resized_size(width, height, p.resize_shorter as usize, out_w, out_h);
    let resized;
    let img: &[u8] = if (rw, rh) == (width, height) {
        rgb
    } else {
        resized = resize_bilinear_rgb8(rgb, width, height, rw, rh)?;
        &resized
    };

    let left = crop_offset(rw, out_w);
    let top = crop_offset(rh, out_h);
    let plane = out_w * out_h;
    for y in 0..out_h {
        let sy = top + y as i64;
        for x in 0..out_w {
            let sx = left + x as i64;
            let px = if sy >= 0 && (sy as usize) < rh && sx >= 0 && (sx as usize) < rw {
                let i = (sy as usize * rw + sx as usize) * 3;
                [img[i], img[i + 1], img[i + 2]]
            } else {
                [0, 0, 0]
            };
            for c in 0..3 {
                let v = if p.channel_order_bgr { px[2 - c] } else { px[c] } as f32;
                // Spelled as torchvision's ToTensor + Normalize, not folded into one
                // multiply-add, so results match it to the last bit where scale does.
                out_nchw[c * plane + y * out_w + x] = (v * p.scale - p.mean[c]) / p.std[c];
            }
        }
    }
    Ok(())
}

/// The size the image is resized to before cropping: torchvision's `Resize(shorter)` rule
/// (`long = floor(shorter * long / short)`), or the model input size when `shorter == 0`.
pub fn resized_size(width: usize, height: usize, shorter: usize, out_w: usize, out_h: usize) -> (usize, usize) {
    if shorter == 0 {
        return (out_w, out_h);
    }
    let (w, h) = (width as u64, height as u64);
    let s = shorter as u64;
    // Saturating to usize (the long side can exceed u32 on 32-bit targets): callers refuse
    // sides above MAX_SIDE.
    let side = |v: u64| usize::try_from(v.max(1)).unwrap_or(usize::MAX);
    if w <= h {
        (shorter, side((s * h) / w))
    } else {
        (side((s * w) / h), shorter)
    }
}

/// Offset of the crop window inside a side of length `size` (negative = zero padding before),
/// as torchvision's `CenterCrop`: `round((size - crop) / 2)` half-to-even when the side is
/// long enough, else `-floor((crop - size) / 2)`.
pub fn crop_offset(size: usize, crop: usize) -> i64 {
    if crop > size {
        -(((crop - size) / 2) as i64)
    } else {
        let d = (size - crop) as i64;
        let half = d / 2;
        // d odd means an exact .5: Python's round() picks the even neighbour.
        if d % 2 == 1 && half % 2 == 1 {
            half + 1
        } else {
            half
        }
    }
}

/// Fixed-point resampling taps for one axis: output `i` reads `count[i]` input samples
/// starting at `start[i]`, with weights `weights[i * ksize ..]` (sum ≈ 1 << PRECISION_BITS).
struct Taps {
    start: Vec<usize>,
    count: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for the bilinear (triangle, support 1) filter followed by
/// `normalize_coeffs_8bpc`.
fn bilinear_taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // triangle support 1.0, widened when downscaling
    let ksize = support.ceil() as usize * 2 + 1;
    let mut taps =
        Taps { start: vec![0; out_size], count: vec![0; out_size], ksize, weights: vec![0; out_size * ksize] };
    let mut w = vec![0f64; ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `as i64` truncates toward zero like C's (int) cast, which is what Pillow does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut total = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            *wx = (1.0 - t.abs()).max(0.0);
            total += *wx;
        }
        for (dst, &wx) in taps.weights[xx * ksize..xx * ksize + n].iter_mut().zip(&w) {
            let k = if total != 0.0 { wx / total } else { wx };
            let fixed = k * f64::from(1u32 << PRECISION_BITS);
            *dst = if k < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        taps.start[xx] = xmin;
        taps.count[xx] = n;
    }
    taps
}

#[inline]
fn clip8(acc: i64) -> u8 {
    if acc <= 0 {
        0
    } else if acc >= (255i64 + 1) << PRECISION_BITS {
        255
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Resizes a packed RGB8 image with Pillow's bilinear filter (antialiased when downscaling):
/// a horizontal pass over the rows the vertical pass needs, then a vertical pass, each
/// rounding to `u8`. Returns the `new_w x new_h` RGB8 pixels.
pub fn resize_bilinear_rgb8(rgb: &[u8], width: usize, height: usize, new_w: usize, new_h: usize) -> Result<Vec<u8>> {
    if width == 0 || height == 0 || new_w == 0 || new_h == 0 {
        return Err(err(format!("cannot resize {width}x{height} to {new_w}x{new_h}: zero size")));
    }
    if width > MAX_SIDE || height > MAX_SIDE || new_w > MAX_SIDE || new_h > MAX_SIDE {
        return Err(err(format!("cannot resize {width}x{height} to {new_w}x{new_h}: sides above {MAX_SIDE}")));
    }
    // u64: with sides up to MAX_SIDE these products overflow a 32-bit usize (armv7).
    let expected_in = width as u64 * height as u64 * 3;
    if rgb.len() as u64 != expected_in {
        return Err(err(format!("RGB buffer has {} bytes, a {width}x{height} image needs {expected_in}", rgb.len())));
    }
    // The output, and the horizontal pass's rows (at most `height` of them).
    let (new_w64, max_px) = (new_w as u64, MAX_PIXELS as u64);
    if new_w64 * new_h as u64 > max_px || new_w64 * height as u64 > max_px {
        return Err(err(format!(
            "resizing {width}x{height} to {new_w}x{new_h} needs more than {MAX_PIXELS} pixels of buffers"
        )));
    }
    let half = 1i64 << (PRECISION_BITS - 1);

    // Horizontal pass, only over the source rows the vertical pass reads (Pillow does the same).
    let vert = (new_h != height).then(|| bilinear_taps(height, new_h));
    let (row0, row1) = match &vert {
        Some(v) => (v.start[0], v.start[new_h - 1] + v.count[new_h - 1]),
        None => (0, height),
    };
    let rows = row1 - row0;
    let horiz: Vec<u8> = if new_w != width {
        let t = bilinear_taps(width, new_w);
        let mut tmp = vec![0u8; rows * new_w * 3];
        for (r, out_row) in tmp.chunks_exact_mut(new_w * 3).enumerate() {
            let src = &rgb[(row0 + r) * width * 3..(row0 + r + 1) * width * 3];
            for xx in 0..new_w {
                let k = &t.weights[xx * t.ksize..xx * t.ksize + t.count[xx]];
                let base = t.start[xx] * 3;
                let mut acc = [half; 3];
                for (i, &kw) in k.iter().enumerate() {
                    let s = base + i * 3;
                    for c in 0..3 {
                        acc[c] += i64::from(src[s + c]) * i64::from(kw);
                    }
                }
                for c in 0..3 {
                    out_row[xx * 3 + c] = clip8(acc[c]);
                }
            }
        }
        tmp
    } else {
        rgb[row0 * width * 3..row1 * width * 3].to_vec()
    };

    let Some(v) = vert else {
        return Ok(horiz);
    };
    let stride = new_w * 3;
    let mut out = vec![0u8; new_h * stride];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let k = &v.weights[yy * v.ksize..yy * v.ksize + v.count[yy]];
        let first = v.start[yy] - row0;
        for (x, o) in out_row.iter_mut().enumerate() {
            let mut acc = half;
            for (i, &kw) in k.iter().enumerate() {
                acc += i64::from(horiz[(first + i) * stride + x]) * i64::from(kw);
            }
            *o = clip8(acc);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_match_pillow_for_2x_downscale() {
        // Scale 2: support 2, weights triangle((x + 0.5 - center) / 2); interior outputs read
        // 4 inputs with 1/8, 3/8, 3/8, 1/8; the first output is clipped to 3 taps (3/7 3/7 1/7).
        let t = bilinear_taps(8, 4);
        let one = f64::from(1u32 << PRECISION_BITS);
        let got = |i: usize| -> Vec<f64> {
            t.weights[i * t.ksize..i * t.ksize + t.count[i]].iter().map(|&w| f64::from(w) / one).collect()
        };
        assert_eq!((t.start[0], t.count[0]), (0, 3));
        assert_eq!((t.start[1], t.count[1]), (1, 4));
        for (a, b) in got(0).iter().zip([3.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        for (a, b) in got(1).iter().zip([0.125, 0.375, 0.375, 0.125]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn crop_offset_rounds_half_to_even_and_pads() {
        assert_eq!(crop_offset(256, 224), 16);
        assert_eq!(crop_offset(257, 224), 16); // 16.5 -> 16
        assert_eq!(crop_offset(259, 224), 18); // 17.5 -> 18
        assert_eq!(crop_offset(224, 224), 0);
        assert_eq!(crop_offset(220, 224), -2);
        assert_eq!(crop_offset(221, 224), -1); // pad 1 before, 2 after
    }

    #[test]
    fn resized_size_follows_torchvision() {
        assert_eq!(resized_size(640, 480, 256, 224, 224), (341, 256));
        assert_eq!(resized_size(480, 640, 256, 224, 224), (256, 341));
        assert_eq!(resized_size(500, 500, 256, 224, 224), (256, 256));
        assert_eq!(resized_size(640, 480, 0, 32, 32), (32, 32));
    }
}
