//! Scalar reference kernels: the test oracle and the fallback on every CPU.
