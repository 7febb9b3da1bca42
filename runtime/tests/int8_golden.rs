//! Cross-CPU bit-exactness of a whole int8 model: the committed int8 ResNet-20
//! (`fixtures/resnet20/resnet20_int8.resq`, made by `fixtures/gen/int8_golden.sh`) must give
//! exactly the committed logits (computed once by the reference kernels) at every kernel tier
//! and thread count, on every CPU the suite runs on (x86; aarch64 as Cortex-A72 and -A76 and
//! armv7 under qemu in CI).

mod common;
use common::*;
use resq::{Isa, Model, Options};
use std::path::Path;

#[test]
fn int8_resnet20_reproduces_the_golden_logits_bit_for_bit() {
    let Some(data) = shared_data("int8_resnet20_reproduces_the_golden_logits_bit_for_bit") else { return };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/resnet20");
    let model = Model::open(fixtures.join("resnet20_int8.resq")).expect("int8 fixture loads");
    assert_eq!(model.info().precision, resq::Precision::Int8);
    let (shape, input) = resq::npy::read_f32(&data.join("refs/resnet20/input.npy")).unwrap();
    let (gshape, golden) = resq::npy::read_f32(&fixtures.join("resnet20_int8_golden.npy")).unwrap();
    let rows = shape[0];
    assert_eq!(gshape, vec![rows, 10]);
    let (il, ol) = (model.input_len(), model.output_len());
    // Every tier this CPU runs (generic always), 1..=4 threads (2 under emulation).
    let mut tiers = vec![Isa::Generic];
    if Isa::detect() != Isa::Generic {
        tiers.push(Isa::detect());
    }
    let max_threads = if emulated() { 2 } else { 4 };
    let golden_bits: Vec<u32> = golden.iter().map(|v| v.to_bits()).collect();
    for &isa in &tiers {
        for threads in 1..=max_threads {
            let mut s = model.session(Options::default().threads(threads).max_isa(isa)).unwrap();
            let isa_run = s.isa();
            let mut got = Vec::with_capacity(rows * ol);
            for r in 0..rows {
                got.extend(s.run(&input[r * il..(r + 1) * il]).unwrap().iter().map(|v| v.to_bits()));
            }
            let first_diff = got.iter().zip(&golden_bits).position(|(a, b)| a != b);
            assert!(
                first_diff.is_none(),
                "tier {isa_run:?} ({} threads): logits differ from the golden ones, first at element {:?} ({} vs {})",
                threads,
                first_diff,
                f32::from_bits(got[first_diff.unwrap_or(0)]),
                golden[first_diff.unwrap_or(0)]
            );
        }
    }
    // The int8 model is the fp32 one's close approximation: same top-1 as the ONNX Runtime
    // fp32 reference on nearly every row.
    let (_, fp32) = resq::npy::read_f32(&data.join("refs/resnet20/logits.npy")).unwrap();
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
    let agree =
        (0..rows).filter(|&r| argmax(&golden[r * 10..r * 10 + 10]) == argmax(&fp32[r * 10..r * 10 + 10])).count();
    assert!(agree + 1 >= rows, "int8 golden agrees with fp32 top-1 on only {agree} of {rows} rows");
}
