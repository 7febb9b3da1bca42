//! The converter's error type.

use std::fmt;
use std::path::PathBuf;

/// A node the converter cannot import, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedNode {
    pub op_type: String,
    pub node: String,
    pub reason: String,
}

impl fmt::Display for UnsupportedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} node '{}': {}", self.op_type, self.node, self.reason)
    }
}

fn list(nodes: &[UnsupportedNode]) -> String {
    nodes.iter().map(|n| format!("\n  - {n}")).collect()
}

/// Everything that can go wrong while converting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a protobuf ONNX model (truncated, garbage, wrong file).
    #[error("{what} is not a valid ONNX protobuf: {detail}")]
    Decode { what: String, detail: String },
    /// The model is well-formed protobuf but not a valid or usable ONNX graph.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// A node is malformed (bad attribute, inconsistent shapes).
    #[error("{op_type} node '{node}': {msg}")]
    InvalidNode { op_type: String, node: String, msg: String },
    /// Every node that resq cannot import, listed at once.
    #[error("the model uses {} unsupported node(s):{}", .0.len(), list(.0))]
    Unsupported(Vec<UnsupportedNode>),
    /// A tensor proto (test vector, `--freeze` file, initializer) cannot be read.
    #[error("tensor '{name}': {msg}")]
    Tensor { name: String, msg: String },
    /// A `--freeze` binding that does not fit the graph.
    #[error("cannot freeze input '{name}': {msg}")]
    Freeze { name: String, msg: String },
    #[error("precision {0} is not supported in this version: only fp32 is")]
    Precision(String),
    #[error("{0} labels given but the model's output has {1} classes (its last dim)")]
    Labels(usize, usize),
    /// The `.resq` writer rejected what lowering produced.
    #[error("{0}")]
    Build(#[from] resq::format::BuildError),
    #[error("{0}")]
    Other(String),
}

impl ConvertError {
    pub(crate) fn node(op_type: &str, node: &str, msg: impl Into<String>) -> Self {
        ConvertError::InvalidNode { op_type: op_type.into(), node: node.into(), msg: msg.into() }
    }
}
