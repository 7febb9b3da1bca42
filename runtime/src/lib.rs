//! resq: inference runtime for ResNet-family image classifiers on edge CPUs.
//!
//! ```no_run
//! # fn main() -> resq::Result<()> {
//! let model = resq::Model::open("resnet20.resq")?;
//! let mut session = model.session(resq::Options::default().threads(2))?;
//! let input = vec![0.0f32; model.input_len()]; // NCHW, preprocessed
//! let scores = session.run(&input)?;
//! println!("{} scores", scores.len());
//! # Ok(()) }
//! ```

pub mod error;
pub mod format;
pub mod kernels;
pub mod model;
pub mod npy;
pub mod ops;
pub mod plan;
pub mod preprocess;
pub mod session;
pub mod team;

pub use error::{Error, Result};
pub use format::{DType, Layout, PreprocessPreset};
pub use kernels::Isa;
pub use model::{InputLayout, LayerReport, Model, ModelBytes, ModelInfo, OpInfo, Precision, Preprocess, TensorInfo};
pub use session::{Options, Session, TensorData};
