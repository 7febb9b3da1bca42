//! The runtime's one error type. Every variant says what went wrong and where (file path,
//! byte offset, section, record, op or tensor), so a message alone is enough to act on.

use std::path::PathBuf;

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the runtime. Kernels never fail: inputs are validated when
/// a model is loaded, and shapes once per call at the session boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or mapping a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A `.resq` file (or byte buffer) is malformed: truncated, corrupted, inconsistent or
    /// hostile. `what` names the section/record/field and the expected and found values.
    #[error("invalid .resq file{}: {what}{}", fmt_path(path), fmt_offset(offset))]
    Format {
        /// The file, when the model came from one.
        path: Option<PathBuf>,
        what: String,
        /// Absolute byte offset of the offending record or field, when known.
        offset: Option<u64>,
    },

    /// A valid file uses something this build cannot run (e.g. a weight layout whose kernels
    /// are not compiled in, or a quantized tensor).
    #[error("unsupported{}: {what}", fmt_path(path))]
    Unsupported { path: Option<PathBuf>, what: String },

    /// The caller passed an input buffer of the wrong size (in elements).
    #[error("input has {found} f32 values but the model expects {expected}")]
    Input { expected: usize, found: usize },

    /// A caller-provided buffer other than the input has the wrong size.
    #[error("{what}: expected length {expected}, found {found}")]
    Buffer { what: &'static str, expected: usize, found: usize },

    /// Preprocessing an image failed (bad size, buffer length, parameters).
    #[error("preprocessing: {0}")]
    Preprocess(String),

    /// A `.npy` file is malformed or not what was asked for.
    #[error("{}: {what}", path.display())]
    Npy { path: PathBuf, what: String },

    /// A session buffer could not be allocated.
    #[error("cannot allocate {bytes} bytes for the session {what}")]
    OutOfMemory { what: &'static str, bytes: u64 },

    /// The session's thread pool could not be started.
    #[error("cannot start a thread pool of {threads} threads: {what}")]
    ThreadPool { threads: usize, what: String },
}

impl Error {
    /// A [`Error::Format`] without path (the path is attached by [`Error::with_path`]).
    pub fn format(what: impl Into<String>, offset: Option<u64>) -> Self {
        Error::Format { path: None, what: what.into(), offset }
    }

    /// A [`Error::Unsupported`] without path.
    pub fn unsupported(what: impl Into<String>) -> Self {
        Error::Unsupported { path: None, what: what.into() }
    }

    /// Attach the path of the file the error is about (for errors that carry one).
    pub fn with_path(self, p: &std::path::Path) -> Self {
        match self {
            Error::Format { path: None, what, offset } => Error::Format { path: Some(p.to_path_buf()), what, offset },
            Error::Unsupported { path: None, what } => Error::Unsupported { path: Some(p.to_path_buf()), what },
            e => e,
        }
    }
}

fn fmt_path(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!(" {}", p.display()),
        None => String::new(),
    }
}

fn fmt_offset(o: &Option<u64>) -> String {
    match o {
        Some(o) => format!(" (at byte {o:#x})"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_path_and_offset() {
        let e = Error::format("bad magic", Some(0x40)).with_path(std::path::Path::new("/tmp/m.resq"));
        let s = e.to_string();
        assert!(s.contains("/tmp/m.resq") && s.contains("bad magic") && s.contains("0x40"), "{s}");
        let e = Error::Input { expected: 3072, found: 3 };
        assert!(e.to_string().contains("3072"));
    }

    #[test]
    fn error_is_send_sync() {
        fn f<T: Send + Sync + 'static>() {}
        f::<Error>();
    }
}
