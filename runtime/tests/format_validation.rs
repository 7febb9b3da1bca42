//! Hostile and corrupted files: every one gives an `Err` naming the problem, never a panic.

mod common;
use common::*;
use resq::format::*;
use resq::Model;

fn load_err(bytes: &[u8]) -> String {
    match Model::from_bytes(bytes.to_vec()) {
        Ok(_) => panic!("corrupted file was accepted"),
        Err(e) => e.to_string(),
    }
}

fn expect_err(bytes: &[u8], needle: &str) {
    let e = load_err(bytes);
    assert!(e.contains(needle), "error {e:?} should mention {needle:?}");
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// (table entry offset, section offset, count) of a section kind.
fn section(b: &[u8], kind: SectionKind) -> (usize, usize, usize) {
    let n = u32_at(b, 40) as usize;
    (0..n)
        .map(|i| 64 + 32 * i)
        .find(|&e| u32_at(b, e) == kind as u32)
        .map(|e| (e, u64_at(b, e + 8) as usize, u64_at(b, e + 24) as usize))
        .expect("section present")
}

fn tensor_at(b: &[u8], id: usize) -> usize {
    section(b, SectionKind::Tensors).1 + 72 * id
}
fn op_at(b: &[u8], index: usize) -> usize {
    section(b, SectionKind::Ops).1 + 136 * index
}

fn tiny() -> Vec<u8> {
    tiny_model(1).0
}

/// The id of the tensor named `name` in the tiny model.
fn tensor_id(b: &[u8], name: &str) -> usize {
    let (_, strings, _) = section(b, SectionKind::Strings);
    let (_, _, count) = section(b, SectionKind::Tensors);
    (0..count)
        .find(|&i| {
            let at = tensor_at(b, i);
            let (o, l) = (u32_at(b, at) as usize, u32_at(b, at + 4) as usize);
            &b[strings + o..strings + o + l] == name.as_bytes()
        })
        .expect("tensor exists")
}

#[test]
fn the_unmodified_file_loads() {
    Model::from_bytes(tiny()).unwrap();
}

#[test]
fn every_truncation_is_an_error() {
    let b = tiny();
    for len in 0..b.len() {
        let e = load_err(&b[..len]);
        assert!(e.contains("invalid .resq file"), "len {len}: {e}");
    }
    // Truncated with the header patched to agree (so the checks behind file_size run).
    for len in (64..b.len()).step_by(7).chain([b.len() - 1, b.len() - 64]) {
        let mut t = b[..len].to_vec();
        t[24..32].copy_from_slice(&(len as u64).to_le_bytes());
        fix_checksum(&mut t);
        load_err(&t);
    }
    // Padding at the end is rejected too.
    let mut p = b.clone();
    p.extend_from_slice(&[0; 64]);
    expect_err(&p, "bytes");
}

#[test]
fn flipping_any_header_or_section_table_byte_is_an_error() {
    let b = tiny();
    let table_end = 64 + 32 * u32_at(&b, 40) as usize;
    for at in 0..table_end {
        for mask in [0x01u8, 0x80, 0xFF] {
            let mut c = b.clone();
            c[at] ^= mask;
            load_err(&c);
            // Behind the checksum: the structural checks must catch it on their own, except
            // where the flip yields another valid file: an older minor version this reader
            // still accepts (1.1 -> 1.0).
            let older_minor = (10..12).contains(&at) && u16::from_le_bytes([c[10], c[11]]) < VERSION_MINOR;
            if !(48..56).contains(&at) && !older_minor {
                fix_checksum(&mut c);
                let e = load_err(&c);
                assert!(!e.contains("checksum"), "byte {at}: {e}");
            }
        }
    }
}

#[test]
fn flipping_structural_bytes_of_tensor_and_op_records_is_an_error() {
    let b = tiny();
    // Skip the name (a flip there can select another valid string).
    for name in ["conv.w", "conv"] {
        let at = tensor_at(&b, tensor_id(&b, name));
        for off in 8..72 {
            for mask in [0x01u8, 0xFF] {
                let mut c = b.clone();
                c[at + off] ^= mask;
                fix_checksum(&mut c);
                if Model::from_bytes(c).is_ok() {
                    panic!("tensor '{name}' byte {off} ^ {mask:#x} accepted");
                }
            }
        }
    }
    // The Conv2d op (index 1): everything but its name and the act_min/act_max words (which
    // are ignored for ReLU).
    let at = op_at(&b, 1);
    for off in (0..136).filter(|o| !(8..16).contains(o) && !(88..96).contains(o)) {
        for mask in [0x01u8, 0xFF] {
            if off == 84 && mask == 1 {
                continue; // act 1 (ReLU) -> 0 (none) is a valid file
            }
            let mut c = b.clone();
            c[at + off] ^= mask;
            fix_checksum(&mut c);
            if Model::from_bytes(c).is_ok() {
                panic!("conv op byte {off} ^ {mask:#x} accepted");
            }
        }
    }
}

#[test]
fn header_errors_name_the_field() {
    let b = tiny();
    let mut c = b.clone();
    c[0] = b'X';
    expect_err(&c, "magic");
    let mut c = b.clone();
    c[8..10].copy_from_slice(&(VERSION_MAJOR + 1).to_le_bytes());
    fix_checksum(&mut c);
    expect_err(&c, &format!("format version {}.{VERSION_MINOR} is not supported", VERSION_MAJOR + 1));
    let mut c = b.clone();
    c[10..12].copy_from_slice(&(VERSION_MINOR + 1).to_le_bytes());
    fix_checksum(&mut c);
    expect_err(&c, &format!("format version {VERSION_MAJOR}.{} is not supported", VERSION_MINOR + 1));
    let mut c = b.clone();
    c[16] = 1;
    fix_checksum(&mut c);
    expect_err(&c, "flags");
    let mut c = b.clone();
    c[100] ^= 0x10;
    expect_err(&c, "checksum mismatch");
}

#[test]
fn section_table_errors_name_the_problem() {
    let b = tiny();
    let (meta_e, meta_off, _) = section(&b, SectionKind::Meta);
    let (str_e, _, _) = section(&b, SectionKind::Strings);
    let (data_e, _, _) = section(&b, SectionKind::Data);
    let patch = |at: usize, v: u64| {
        let mut c = b.clone();
        c[at..at + 8].copy_from_slice(&v.to_le_bytes());
        fix_checksum(&mut c);
        c
    };
    expect_err(&patch(str_e + 8, meta_off as u64 + 32), "not a multiple of 64");
    expect_err(&patch(data_e + 8, b.len() as u64 + 64), "past the end of the file");
    expect_err(&patch(data_e + 8, u64::MAX - 63), "past the end of the file");
    expect_err(&patch(str_e + 8, meta_off as u64), "overlap");
    expect_err(&patch(meta_e + 8, 64), "overlaps the header");
    expect_err(&patch(meta_e + 16, 161), "size 161 != count 1");
    let mut c = b.clone();
    c[str_e..str_e + 4].copy_from_slice(&(SectionKind::Meta as u32).to_le_bytes());
    fix_checksum(&mut c);
    expect_err(&c, "appears twice");
    let mut c = b.clone();
    c[str_e..str_e + 4].copy_from_slice(&77u32.to_le_bytes());
    fix_checksum(&mut c);
    expect_err(&c, "unknown kind 77");
    let mut c = b.clone();
    c[str_e..str_e + 4].copy_from_slice(&(SectionKind::LayerReport as u32).to_le_bytes());
    fix_checksum(&mut c);
    // Since 1.2 LAYER_REPORT has a fixed record size, which the byte blob does not have.
    expect_err(&c, "LayerReport section: record_size is 1, expected 32");
    // A string blob with a record size of 32 bytes gets as far as the missing STRINGS check.
    let mut c = b.clone();
    let len = u64::from_le_bytes(c[str_e + 16..str_e + 24].try_into().unwrap());
    c[str_e..str_e + 4].copy_from_slice(&(SectionKind::LayerReport as u32).to_le_bytes());
    c[str_e + 4..str_e + 8].copy_from_slice(&32u32.to_le_bytes());
    c[str_e + 16..str_e + 24].copy_from_slice(&(len / 32 * 32).to_le_bytes());
    c[str_e + 24..str_e + 32].copy_from_slice(&(len / 32).to_le_bytes());
    fix_checksum(&mut c);
    expect_err(&c, "Strings section is missing");
}

#[test]
fn tensor_record_errors_name_the_problem() {
    let b = tiny();
    let w = tensor_at(&b, tensor_id(&b, "conv.w"));
    let patch = |off: usize, bytes: &[u8]| {
        let mut c = b.clone();
        c[w + off..w + off + bytes.len()].copy_from_slice(bytes);
        fix_checksum(&mut c);
        c
    };
    expect_err(&patch(9, &[9]), "unknown dtype 9");
    expect_err(&patch(10, &[9]), "unknown layout 9");
    expect_err(&patch(8, &[5]), "unknown kind 5");
    expect_err(&patch(11, &[7]), "rank 7 exceeds");
    expect_err(&patch(16, &[0]), "dim 0 is 0");
    expect_err(&patch(32, &[1]), "past rank");
    let size = u64_at(&b, w + 48);
    expect_err(&patch(48, &(size - 4).to_le_bytes()), "data_size");
    let off = u64_at(&b, w + 40);
    expect_err(&patch(40, &(off + 4).to_le_bytes()), "not a multiple of 64");
    expect_err(&patch(40, &(off + (1 << 20)).to_le_bytes()), "outside the DATA section");
    expect_err(&patch(9, &[DType::I8 as u8]), "");
    // Huge dims: size computations must not overflow.
    expect_err(&patch(16, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), "bytes");
}

#[test]
fn op_record_errors_name_the_problem() {
    let b = tiny();
    let conv = op_at(&b, 1);
    let patch = |off: usize, bytes: &[u8]| {
        let mut c = b.clone();
        c[conv + off..conv + off + bytes.len()].copy_from_slice(bytes);
        fix_checksum(&mut c);
        c
    };
    expect_err(&patch(0, &99u16.to_le_bytes()), "unknown op kind 99");
    expect_err(&patch(4, &[1]), "has 1 inputs, Conv2d takes 2 to 4");
    expect_err(&patch(5, &[2]), "has 2 outputs");
    expect_err(&patch(40, &5u32.to_le_bytes()), "output dims"); // kernel_h 5 with pad 1
    expect_err(&patch(40 + 10 * 4, &3u32.to_le_bytes()), "groups 3");
    expect_err(&patch(40 + 11 * 4, &7u32.to_le_bytes()), "unknown activation kind 7");
    expect_err(&patch(40 + 14 * 4, &9u32.to_le_bytes()), "unknown conv algo 9");
    expect_err(&patch(40 + 20 * 4, &1u32.to_le_bytes()), "param words");
    // Conv reads the Linear's output (produced later).
    let logits = tensor_id(&b, "logits") as u32;
    expect_err(&patch(16, &logits.to_le_bytes()), "before it is produced");
    // The Linear (op 5) writes the conv's output again.
    let mut c = b.clone();
    let lin = op_at(&b, 5);
    let conv_out = tensor_id(&b, "conv") as u32;
    c[lin + 32..lin + 36].copy_from_slice(&conv_out.to_le_bytes());
    fix_checksum(&mut c);
    expect_err(&c, "already produced");
}

/// Build a one-conv model with explicit (possibly wrong) shapes.
fn conv_model(y_dims: [usize; 4], w_dims: [usize; 4], w_layout: Layout, w_len: usize, algo: u32) -> Vec<u8> {
    build([1, 3, 8, 8], |b, xt, _| {
        let w = b.constant_f32("w", w_layout, &w_dims, &vec![0.5; w_len]);
        let y = b.activation("y", DType::F32, Layout::Nhwc, &y_dims);
        let p = ConvParams {
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            groups: 1,
            algo,
            ..Default::default()
        };
        b.op(OpKind::Conv2d, "conv", &[xt, w], &[y], &p);
        to_nchw(b, y, y_dims)
    })
}

#[test]
fn shape_errors_name_the_problem() {
    Model::from_bytes(conv_model([1, 6, 6, 4], [4, 3, 3, 3], Layout::Ohwi, 108, 0)).unwrap();
    expect_err(&conv_model([1, 8, 8, 4], [4, 3, 3, 3], Layout::Ohwi, 108, 0), "computed [N, OH, OW, O] = [1, 6, 6, 4]");
    expect_err(&conv_model([1, 6, 6, 4], [4, 3, 3, 2], Layout::Ohwi, 72, 0), "weight");
    expect_err(&conv_model([1, 6, 6, 4], [4, 3, 3, 3], Layout::RowMajor, 108, 0), "layout RowMajor, expected [Ohwi]");
    // Packed weights: the size is checked with groups known; the layout must be the algo's.
    expect_err(&conv_model([1, 6, 6, 4], [4, 3, 3, 3], Layout::PackedN16, 108, 1), "data_size");
    Model::from_bytes(conv_model([1, 6, 6, 4], [4, 3, 3, 3], Layout::PackedN16, 16 * 27, 1)).unwrap();
    expect_err(&conv_model([1, 6, 6, 4], [4, 3, 3, 3], Layout::PackedN16, 16 * 27, 0), "expected [Ohwi]");
    expect_err(&conv_model([1, 6, 6, 4], [4, 3, 3, 3], Layout::Ohwi, 108, 1), "expected [PackedN16]");
    expect_err(&conv_model([1, 6, 6, 4], [4, 3, 3, 3], Layout::WinogradF43N16, 36 * 16 * 3 - 1, 2), "data_size");
    Model::from_bytes(conv_model([1, 6, 6, 4], [4, 3, 3, 3], Layout::WinogradF43N16, 36 * 16 * 3, 2)).unwrap();
}

#[test]
fn graph_and_meta_errors_name_the_problem() {
    // An op reading an activation that no earlier op produced.
    let bytes = build([1, 1, 2, 2], |b, _, x| {
        let t = b.activation("later", DType::F32, Layout::RowMajor, &[4]);
        let y = b.activation("y", DType::F32, Layout::RowMajor, &[4]);
        b.op(OpKind::Activation, "first", &[t], &[y], &ActParams::default());
        b.op(OpKind::Copy, "second", &[x], &[t], &[0u32; 0]);
        y
    });
    expect_err(&bytes, "op 1 'first' (Activation): input 0 reads tensor 2 'later' before it is produced");
    // The graph output is never produced.
    let bytes = build([1, 1, 2, 2], |b, _, _| b.activation("orphan", DType::F32, Layout::RowMajor, &[4]));
    expect_err(&bytes, "not produced by any op");
    // Labels must match the output's last dim.
    let (bytes, _) = tiny_model(1);
    let (_, meta, _) = section(&bytes, SectionKind::Meta);
    let mut c = bytes.clone();
    c[meta + 60..meta + 64].copy_from_slice(&2u32.to_le_bytes());
    fix_checksum(&mut c);
    expect_err(&c, "num_labels is 2 but the labels string has 0 lines");
    let mut c = bytes.clone();
    c[meta + 120] = 1;
    fix_checksum(&mut c);
    expect_err(&c, "META reserved");
    let mut c = bytes.clone();
    c[meta + 40..meta + 44].copy_from_slice(&2u32.to_le_bytes());
    fix_checksum(&mut c);
    expect_err(&c, "input_dims");
}

#[test]
fn random_corruption_never_panics() {
    let b = tiny();
    let mut r = Rng::new(0xDEAD);
    for _ in 0..3000 {
        let mut c = b.clone();
        for _ in 0..1 + r.below(4) {
            let at = r.below(c.len());
            c[at] = r.next_u64() as u8;
        }
        if r.below(2) == 0 {
            fix_checksum(&mut c);
        }
        // Either outcome is fine; it must not panic, and a model that loads must run.
        if let Ok(m) = Model::from_bytes(c) {
            let mut s = m.session(resq::Options::default().threads(1)).unwrap();
            let x = vec![0.25; m.input_len()];
            assert_eq!(s.run(&x).unwrap().len(), m.output_len());
        }
    }
}
