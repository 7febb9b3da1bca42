//! Decoding image files (PNG, JPEG) into packed RGB8, with limits for untrusted input.

use crate::CliError;
use std::path::Path;

/// Largest accepted image side, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest allocation the decoder may make, in bytes.
pub const MAX_ALLOC: u64 = 1 << 30;

/// A decoded image: `width * height * 3` bytes, rows top to bottom.
pub struct Rgb8 {
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

/// Reads and decodes `path` (format from the file's contents, not its name). Grey, grey+alpha,
/// RGBA and 16-bit images become 8-bit RGB (alpha is dropped, as PIL's `convert("RGB")` does).
pub fn decode_rgb8(path: &Path) -> Result<Rgb8, CliError> {
    let fail = |what: String| CliError::Failed(format!("{}: {what}", path.display()));
    let reader = image::ImageReader::open(path).map_err(|e| fail(format!("cannot open image: {e}")))?;
    let mut reader = reader.with_guessed_format().map_err(|e| fail(format!("cannot read image: {e}")))?;
    if reader.format().is_none() {
        return Err(fail("not a recognised image file (PNG or JPEG expected)".into()));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| fail(format!("cannot decode image: {e}")))?;
    let rgb = img.into_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    if width == 0 || height == 0 {
        return Err(fail(format!("image has zero size ({width}x{height})")));
    }
    Ok(Rgb8 { pixels: rgb.into_raw(), width, height })
}
