//! resq-convert
