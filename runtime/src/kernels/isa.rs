//! Instruction-set tiers and run-time detection. `cfg(target_arch)` only decides what
//! compiles; which tier runs is decided here, once per process, capped by `RESQ_MAX_ISA`.

use std::sync::OnceLock;

/// A kernel tier. Ordered within an architecture: a higher tier implies the lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable scalar Rust: the reference twin of every kernel.
    Generic,
    /// x86_64 with AVX2 + FMA (+F16C).
    Avx2Fma,
    /// x86_64 with AVX-512 F/BW/DQ/VL (+VNNI where present).
    Avx512,
    /// aarch64 Advanced SIMD (every aarch64 CPU).
    Neon,
    /// aarch64 with the dot-product extension (sdot/udot).
    NeonDot,
    /// aarch64 with dot product and fp16 arithmetic.
    NeonDotFp16,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
            Isa::NeonDot => "neon-dot",
            Isa::NeonDotFp16 => "neon-dot-fp16",
        }
    }

    pub fn parse(s: &str) -> Option<Isa> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "generic" | "scalar" => Isa::Generic,
            "avx2" | "avx2fma" | "avx2-fma" => Isa::Avx2Fma,
            "avx512" => Isa::Avx512,
            "neon" => Isa::Neon,
            "neon-dot" | "neondot" | "dotprod" => Isa::NeonDot,
            "neon-dot-fp16" | "fp16" => Isa::NeonDotFp16,
            _ => return None,
        })
    }

    /// The best tier this CPU supports (ignores `RESQ_MAX_ISA`).
    pub fn best_supported() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("fma")
                {
                    return Isa::Avx512;
                }
                if is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
                {
                    return Isa::Avx2Fma;
                }
            }
            #[cfg(target_arch = "aarch64")]
            {
                let dot = std::arch::is_aarch64_feature_detected!("dotprod");
                let fp16 = std::arch::is_aarch64_feature_detected!("fp16");
                return if dot && fp16 {
                    Isa::NeonDotFp16
                } else if dot {
                    Isa::NeonDot
                } else {
                    Isa::Neon
                };
            }
            #[allow(unreachable_code)]
            Isa::Generic
        })
    }

    /// True if code for `self` may run on this CPU.
    pub fn is_supported(self) -> bool {
        self == Isa::Generic || (self.same_family(Isa::best_supported()) && self <= Isa::best_supported())
    }

    fn same_family(self, other: Isa) -> bool {
        let fam = |i: Isa| match i {
            Isa::Generic => 0,
            Isa::Avx2Fma | Isa::Avx512 => 1,
            Isa::Neon | Isa::NeonDot | Isa::NeonDotFp16 => 2,
        };
        fam(self) == fam(other)
    }

    /// The tier to use by default: the best supported, capped by `RESQ_MAX_ISA` when set
    /// (an unknown value is reported once on stderr and ignored).
    pub fn detect() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let best = Isa::best_supported();
            match std::env::var("RESQ_MAX_ISA") {
                Ok(v) => match Isa::parse(&v) {
                    Some(cap) => best.capped(cap),
                    None => {
                        eprintln!("resq: RESQ_MAX_ISA={v:?} is not a known tier; using {}", best.name());
                        best
                    }
                },
                Err(_) => best,
            }
        })
    }

    /// The tier whose kernels actually run for `self` in this build: AVX-512 runs the AVX2
    /// kernels (no AVX-512 kernels yet). NeonDotFp16 is its own tier: f16-weight layers use
    /// the fp16-arithmetic GEMM kernel (`aarch64/gemm_f16_6x16__neon_fp16.rs`), everything
    /// else the NeonDot kernels. Sessions report this, so `resq bench`/`inspect` say what
    /// really runs.
    pub fn implemented(self) -> Isa {
        match self {
            Isa::Avx512 => Isa::Avx2Fma,
            other => other,
        }
    }

    /// `self` limited to at most `cap` (a cap from another architecture family means generic).
    pub fn capped(self, cap: Isa) -> Isa {
        if cap == Isa::Generic || !self.same_family(cap) {
            Isa::Generic
        } else {
            self.min(cap)
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_and_parse() {
        for i in [Isa::Generic, Isa::Avx2Fma, Isa::Avx512, Isa::Neon, Isa::NeonDot, Isa::NeonDotFp16] {
            assert_eq!(Isa::parse(i.name()), Some(i));
        }
        assert_eq!(Isa::Avx512.capped(Isa::Avx2Fma), Isa::Avx2Fma);
        assert_eq!(Isa::Avx2Fma.capped(Isa::Avx512), Isa::Avx2Fma);
        assert_eq!(Isa::Avx2Fma.capped(Isa::Generic), Isa::Generic);
        assert_eq!(Isa::NeonDot.capped(Isa::Neon), Isa::Neon);
        assert_eq!(Isa::NeonDot.capped(Isa::Avx2Fma), Isa::Generic);
        assert!(Isa::Generic.is_supported());
        assert!(Isa::detect().is_supported());
        assert_eq!(Isa::Avx512.implemented(), Isa::Avx2Fma);
        assert_eq!(Isa::NeonDot.implemented(), Isa::NeonDot);
        assert_eq!(Isa::NeonDotFp16.implemented(), Isa::NeonDotFp16);
        assert_eq!(Isa::Neon.implemented(), Isa::Neon);
        assert_eq!(Isa::Avx2Fma.implemented(), Isa::Avx2Fma);
    }
}
