//! x86_64 kernels (AVX2+FMA, AVX-512), runtime-dispatched through `super::Isa`.
