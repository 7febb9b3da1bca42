//! The `.resq` file format: records, checksum, writer and validating reader.
//! `docs/FORMAT.md` is the byte-level specification.

pub mod checksum;
pub mod reader;
pub mod records;
pub mod writer;

pub use records::*;
pub use writer::{empty_meta, params_words, BuildError, FileBuilder};
