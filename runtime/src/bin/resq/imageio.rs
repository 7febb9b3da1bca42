//! Decoding image files (PNG, JPEG) into packed RGB8, with limits for untrusted input.

use crate::util::{self, InputGeometry};
use crate::CliError;
use resq::format::PreprocessPreset;
use resq::{ModelInfo, Preprocess};
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

/// How a model takes images, checked once: used by `classify` and `eval` so both decode and
/// preprocess identically.
pub struct ImageInput {
    pub geom: InputGeometry,
    preprocess: Preprocess,
    nchw: Vec<f32>,
}

impl ImageInput {
    /// Checks that the model (`info`, read from `model_path`, which errors name) takes
    /// preprocessed 3-channel images whose crop equals its input size.
    pub fn new(model_path: &Path, info: &ModelInfo) -> Result<ImageInput, CliError> {
        let failed = |msg: String| CliError::Failed(format!("{}: {msg}", model_path.display()));
        if info.preprocess.preset == PreprocessPreset::None {
            return Err(failed(
                "the model has no image preprocessing (preset \"none\"); feed prepared tensors with `resq run`, \
                 or convert it with --preprocess imagenet|cifar|raw255"
                    .into(),
            ));
        }
        let geom = util::input_geometry(info).map_err(failed)?;
        if geom.channels != 3 {
            return Err(failed(format!("images need a 3-channel input, the model takes {} channels", geom.channels)));
        }
        let pp = &info.preprocess;
        if (pp.height as usize, pp.width as usize) != (geom.height, geom.width) {
            return Err(failed(format!(
                "preprocessing crops to {}x{} but the model input is {}x{}",
                pp.height, pp.width, geom.height, geom.width
            )));
        }
        let nchw = vec![0f32; geom.channels * geom.height * geom.width];
        Ok(ImageInput { geom, preprocess: info.preprocess, nchw })
    }

    /// Values of one sample (`channels * height * width`).
    pub fn sample_len(&self) -> usize {
        self.nchw.len()
    }

    /// Decodes `img_path` and preprocesses it as the model's metadata says; returns one sample
    /// in NCHW order (`[3, height, width]`), valid until the next call. Errors name the image.
    pub fn load_nchw(&mut self, img_path: &Path) -> Result<&[f32], CliError> {
        let img = decode_rgb8(img_path)?;
        resq::preprocess::prepare_rgb8(&img.pixels, img.width, img.height, &self.preprocess, &mut self.nchw)
            .map_err(|e| CliError::Failed(format!("{}: {e}", img_path.display())))?;
        Ok(&self.nchw)
    }

    /// [`ImageInput::load_nchw`], written into `dst` (one sample) in the model's input layout.
    pub fn load(&mut self, img_path: &Path, dst: &mut [f32]) -> Result<(), CliError> {
        let g = self.geom;
        let nchw = self.load_nchw(img_path)?;
        if g.nhwc {
            util::nchw_to_nhwc(nchw, dst, g.channels, g.height, g.width);
        } else {
            dst.copy_from_slice(nchw);
        }
        Ok(())
    }
}
