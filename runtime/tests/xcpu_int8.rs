//! Issue 5 item 2 on a large model: the int8 ResNet-50 export, converted and run once on the
//! x86 host by `.ci/xcpu.sh`, must give the same output bytes on every CPU this test runs on
//! (the script runs it natively and under qemu as Cortex-A72, Cortex-A76 and armv7 Cortex-A7).
//!
//! The model is produced on the host rather than here because calibrating ResNet-50 under
//! emulation takes many minutes; the *run* of one image is what must not depend on the CPU.
//! `RESQ_XCPU_DIR` names the folder with `model.resq`, `input.npy` (preprocessed rows) and
//! `expected.npy` (the host's outputs for them, identical at the scalar and the best x86
//! tier: the script checks that). Without it the test prints a skip: it is a CI stage of its
//! own, not part of `cargo test --workspace`. `RESQ_XCPU_ROWS` (default 1) limits the rows
//! run, since one ResNet-50 inference under emulation of the scalar armv7 path takes seconds.

use resq::{Isa, Model, Options};
use std::path::PathBuf;

#[test]
fn int8_resnet50_output_bytes_equal_the_x86_hosts() {
    let Some(dir) = std::env::var_os("RESQ_XCPU_DIR").map(PathBuf::from) else {
        eprintln!("SKIP int8_resnet50_output_bytes_equal_the_x86_hosts: RESQ_XCPU_DIR is not set (run .ci/xcpu.sh)");
        return;
    };
    let rows: usize = std::env::var("RESQ_XCPU_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let model = Model::open(dir.join("model.resq")).unwrap();
    assert_eq!(model.info().precision, resq::Precision::Int8);
    let (ishape, input) = resq::npy::read_f32(&dir.join("input.npy")).unwrap();
    let (eshape, expected) = resq::npy::read_f32(&dir.join("expected.npy")).unwrap();
    let (ilen, olen) = (model.input_len(), model.output_len());
    assert_eq!(ishape[0], eshape[0], "input and expected rows");
    assert_eq!(input.len(), ishape[0] * ilen);
    assert_eq!(expected.len(), eshape[0] * olen);
    let rows = rows.min(ishape[0]);
    let best = Isa::detect();
    // The best tier with 2 threads, and (if it is not already the scalar tier) the scalar
    // tier with 1, so both the SIMD kernels and the reference path of this CPU are compared.
    let mut runs = vec![(best, 2)];
    if best != Isa::Generic {
        runs.push((Isa::Generic, 1));
    }
    for (isa, threads) in runs {
        let mut s = model.session(Options::default().threads(threads).max_isa(isa)).unwrap();
        for r in 0..rows {
            let got: Vec<u32> = s.run(&input[r * ilen..][..ilen]).unwrap().iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = expected[r * olen..][..olen].iter().map(|v| v.to_bits()).collect();
            let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert!(
                diff == 0,
                "row {r}: {diff} of {olen} outputs differ from the x86 host's bytes at tier {:?}, {threads} threads",
                s.isa()
            );
            eprintln!(
                "row {r}: {olen} outputs byte-identical to the x86 host at tier {:?}, {threads} threads",
                s.isa()
            );
        }
    }
}
