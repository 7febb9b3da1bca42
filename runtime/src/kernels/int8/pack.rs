//! Int8 weight packing `PackedN16K4` (run by the converter at convert time; the length
//! function also lets the loader validate payload sizes).
//!
//! ```text
//! src OHWI [O][KH][KW][I_g] i8  ->  dst [groups][P = ceil(O_g/16)][K4 = ceil(K/4)][16][4] i8
//! element (o, k) of group g:  dst[((g*P + o/16)*K4 + k/4)*64 + (o%16)*4 + k%4]
//! K = KH*KW*I_g in (kh, kw, i) order; padding (o >= O_g or k >= K) is 0
//! ```
//!
//! A 64-byte group holds 4 consecutive k of 16 output channels: x86 widens 16 bytes (4
//! channels x 4 k) with `vpmovsxbw` for `vpmaddwd`, ARM feeds a whole 16-byte row to `sdot`.

/// Output channels per panel.
pub const PANEL: usize = 16;
/// K values per group.
pub const KG: usize = 4;

/// Number of bytes (= elements) of a PackedN16K4 tensor with `o` output channels, a `kh x kw`
/// kernel, `ig` input channels per group and `groups` groups. `None` when `groups` is 0, `o`
/// is not a multiple of `groups`, or a size overflows.
pub fn packed_n16k4_len(o: usize, kh: usize, kw: usize, ig: usize, groups: usize) -> Option<usize> {
    if groups == 0 || o % groups != 0 {
        return None;
    }
    let panels = (o / groups).div_ceil(PANEL);
    let k4 = kh.checked_mul(kw)?.checked_mul(ig)?.div_ceil(KG);
    groups.checked_mul(panels)?.checked_mul(k4)?.checked_mul(PANEL * KG)
}

/// Packs OHWI int8 weights `[o][kh][kw][ig]` into PackedN16K4 (layout in the module docs).
/// Returns an empty vector when `w_ohwi.len() != o*kh*kw*ig` or the shape is impossible.
pub fn pack_i8_n16k4(w_ohwi: &[i8], o: usize, kh: usize, kw: usize, ig: usize, groups: usize) -> Vec<i8> {
    let Some(len) = packed_n16k4_len(o, kh, kw, ig, groups) else { return Vec::new() };
    let k = kh * kw * ig;
    if o.checked_mul(k) != Some(w_ohwi.len()) {
        return Vec::new();
    }
    let o_g = o / groups;
    let panels = o_g.div_ceil(PANEL);
    let k4 = k.div_ceil(KG);
    let mut dst = vec![0i8; len];
    for g in 0..groups {
        for oc in 0..o_g {
            let src = &w_ohwi[(g * o_g + oc) * k..][..k];
            let base = (g * panels + oc / PANEL) * k4 * PANEL * KG + (oc % PANEL) * KG;
            for (kk, &v) in src.iter().enumerate() {
                dst[base + (kk / KG) * PANEL * KG + kk % KG] = v;
            }
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_every_weight_at_the_spec_index_and_zero_pads() {
        let (o, kh, kw, ig, groups) = (2 * 19, 1, 3, 3, 2); // K = 9: K4 = 3 with one pad k
        let w: Vec<i8> = (0..o * kh * kw * ig).map(|v| (v % 251) as i8).collect();
        let p = pack_i8_n16k4(&w, o, kh, kw, ig, groups);
        assert_eq!(Some(p.len()), packed_n16k4_len(o, kh, kw, ig, groups));
        let (o_g, k, pn, k4) = (19, 9, 2, 3);
        assert_eq!(p.len(), groups * pn * k4 * 64);
        for g in 0..groups {
            for oc in 0..pn * 16 {
                for kk in 0..k4 * 4 {
                    let got = p[((g * pn + oc / 16) * k4 + kk / 4) * 64 + (oc % 16) * 4 + kk % 4];
                    let want = if oc < o_g && kk < k { w[(g * o_g + oc) * k + kk] } else { 0 };
                    assert_eq!(got, want, "g {g} o {oc} k {kk}");
                }
            }
        }
        assert!(pack_i8_n16k4(&w[1..], o, kh, kw, ig, groups).is_empty());
        assert_eq!(packed_n16k4_len(5, 1, 1, 1, 2), None);
        assert_eq!(packed_n16k4_len(4, 1, 1, 1, 0), None);
        assert_eq!(packed_n16k4_len(16, usize::MAX, 2, 1, 1), None);
    }
}
