//! Scalar reference kernels: the test oracle and the fallback on every CPU.

pub mod act;
pub mod conv;
pub mod eltwise;
pub mod gemm;
pub mod layout;
pub mod linear;
pub mod par;
pub mod pool;
pub mod softmax;
