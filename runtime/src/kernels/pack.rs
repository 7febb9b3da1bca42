//! Weight packing for the fp32 GEMM and Winograd kernels (run by the converter at convert
//! time; the `*_len` functions also let the reader validate payload sizes at load).
//!
//! `PackedN16` (see [`crate::format::Layout::PackedN16`]):
//!
//! ```text
//! src OHWI [O][KH][KW][I_g]  ->  dst [groups][ceil(O_g/16)][K = KH*KW*I_g][16]
//! dst[g][p][k][l] = src[o = g*O_g + p*16 + l][k]   (0 where p*16 + l >= O_g)
//! ```
//!
//! so row `k = (kh*KW + kw)*I_g + ci` of a panel holds 16 output channels contiguously: the
//! B operand of the 6x16 micro-kernel, read with two 8-wide loads per k.
//!
//! `WinogradF43N16` (see [`crate::format::Layout::WinogradF43N16`]): F(4x4,3x3) weights
//! `U = G g Gᵀ` (6x6 per (o, i)), stored `[36][ceil(O/16)][I][16]`: for transform position
//! `pos = 6*r + c`, a PackedN16 panel set with K = I.

/// Panel width of the packed layouts (output channels per panel).
pub const NR: usize = 16;

/// IEEE binary16, the element of F16 weight payloads (re-exported so callers of the f16
/// kernels need not depend on `half` themselves).
pub use half::f16;

/// Element type of the float weight payloads the kernels read in place: `f32`, or IEEE
/// binary16 (`half::f16`, format 1.2 `DType::F16`) widened to f32 in registers as it is loaded
/// (F16C `vcvtph2ps` in the AVX2 kernels, [`WeightElem::to_f32`] in the scalar twins). No f32
/// copy of an f16 weight is ever made. Every layout (`Ohwi`, `RowMajor`, `PackedN16`,
/// `WinogradF43N16`) has the same element order for both types.
pub trait WeightElem: bytemuck::Pod + Send + Sync + sealed::Sealed {
    /// True for `half::f16` (lets a SIMD kernel pick its load instruction at compile time).
    const IS_F16: bool;
    /// The value as f32 (exact for both types).
    fn to_f32(self) -> f32;
}

impl WeightElem for f32 {
    const IS_F16: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl WeightElem for half::f16 {
    const IS_F16: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// Number of f32 elements of a PackedN16 tensor; `None` on overflow or a zero `groups`.
pub fn packed_n16_len_checked(o: usize, kh: usize, kw: usize, i_g: usize, groups: usize) -> Option<usize> {
    if groups == 0 || o % groups != 0 {
        return None;
    }
    let panels = (o / groups).div_ceil(NR);
    groups.checked_mul(panels)?.checked_mul(kh)?.checked_mul(kw)?.checked_mul(i_g)?.checked_mul(NR)
}

/// Number of f32 elements of a PackedN16 tensor for `o` output channels, a `kh x kw` kernel,
/// `i_g` input channels per group and `groups` groups (`o` must be a multiple of `groups`).
/// Returns 0 for impossible shapes (zero groups, `o % groups != 0`, overflow).
pub fn packed_n16_len(o: usize, kh: usize, kw: usize, i_g: usize, groups: usize) -> usize {
    packed_n16_len_checked(o, kh, kw, i_g, groups).unwrap_or(0)
}

/// Packs OHWI weights `[o][kh][kw][i_g]` into PackedN16 (layout in the module docs).
/// Returns an empty vector when `w_ohwi.len() != o*kh*kw*i_g` or the shape is impossible.
pub fn pack_n16(w_ohwi: &[f32], o: usize, kh: usize, kw: usize, i_g: usize, groups: usize) -> Vec<f32> {
    let Some(len) = packed_n16_len_checked(o, kh, kw, i_g, groups) else { return Vec::new() };
    let k = kh * kw * i_g;
    if o.checked_mul(k) != Some(w_ohwi.len()) {
        return Vec::new();
    }
    let o_g = o / groups;
    let panels = o_g.div_ceil(NR);
    let mut dst = vec![0.0f32; len];
    for g in 0..groups {
        for p in 0..panels {
            let base = (g * panels + p) * k * NR;
            for l in 0..NR.min(o_g - p * NR) {
                let src = &w_ohwi[(g * o_g + p * NR + l) * k..][..k];
                for (kk, &v) in src.iter().enumerate() {
                    dst[base + kk * NR + l] = v;
                }
            }
        }
    }
    dst
}

/// Number of f32 elements of a WinogradF43N16 tensor for `o` output and `i` input channels
/// (0 on overflow).
pub fn winograd_f43_len(o: usize, i: usize) -> usize {
    o.div_ceil(NR).checked_mul(i).and_then(|v| v.checked_mul(36 * NR)).unwrap_or(0)
}

/// Winograd F(4x4,3x3) weight transform matrix G (6x3).
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Transforms 3x3 OHWI weights `[o][3][3][i]` (groups = 1) into WinogradF43N16:
/// `U[6r+c][o/16][ci][o%16] = (G g Gᵀ)[r][c]`, computed in f64 and rounded once.
/// Returns an empty vector when `w_ohwi.len() != o*9*i` or on overflow.
pub fn pack_winograd_f43(w_ohwi: &[f32], o: usize, i: usize) -> Vec<f32> {
    let len = winograd_f43_len(o, i);
    if len == 0 || o.checked_mul(9 * i) != Some(w_ohwi.len()) {
        return Vec::new();
    }
    let panels = o.div_ceil(NR);
    let mut dst = vec![0.0f32; len];
    for oc in 0..o {
        let (p, l) = (oc / NR, oc % NR);
        for ci in 0..i {
            let g = |r: usize, c: usize| f64::from(w_ohwi[((oc * 3 + r) * 3 + c) * i + ci]);
            // t = G g (6x3), u = t Gᵀ (6x6).
            let mut t = [[0.0f64; 3]; 6];
            for (r, row) in t.iter_mut().enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|j| G[r][j] * g(j, c)).sum();
                }
            }
            for r in 0..6 {
                for c in 0..6 {
                    let u: f64 = (0..3).map(|j| t[r][j] * G[c][j]).sum();
                    dst[(((r * 6 + c) * panels + p) * i + ci) * NR + l] = u as f32;
                }
            }
        }
    }
    dst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n16_places_every_weight_and_zero_pads() {
        let (o, kh, kw, i_g, groups) = (2 * 19, 2, 3, 5, 2);
        let w: Vec<f32> = (0..o * kh * kw * i_g).map(|v| v as f32 + 1.0).collect();
        let p = pack_n16(&w, o, kh, kw, i_g, groups);
        assert_eq!(p.len(), packed_n16_len(o, kh, kw, i_g, groups));
        assert_eq!(p.len(), 2 * 2 * 30 * 16);
        let k = kh * kw * i_g;
        for g in 0..groups {
            for pn in 0..2 {
                for kk in 0..k {
                    for l in 0..16 {
                        let oc = pn * 16 + l;
                        let got = p[((g * 2 + pn) * k + kk) * 16 + l];
                        let want = if oc < 19 { w[(g * 19 + oc) * k + kk] } else { 0.0 };
                        assert_eq!(got, want);
                    }
                }
            }
        }
        assert!(pack_n16(&w[1..], o, kh, kw, i_g, groups).is_empty());
        assert_eq!(packed_n16_len(5, 1, 1, 1, 2), 0);
    }

    #[test]
    fn winograd_weights_reproduce_direct_conv_on_one_tile() {
        // Inverse check: with U from pack_winograd_f43, Aᵀ[(U ⊙ Bᵀ d B)]A equals the direct
        // 3x3 correlation of a 6x6 patch d (the 4x4 valid outputs).
        const BT: [[f64; 6]; 6] = [
            [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
            [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
            [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
            [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
            [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
            [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
        ];
        const AT: [[f64; 6]; 4] = [
            [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
            [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
            [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
        ];
        let w: Vec<f32> = (0..9).map(|v| (v as f32 * 0.37).sin()).collect();
        let u = pack_winograd_f43(&w, 1, 1);
        assert_eq!(u.len(), winograd_f43_len(1, 1));
        let d: Vec<f64> = (0..36).map(|v| (v as f64 * 0.71).cos()).collect();
        let mut v = [[0.0f64; 6]; 6];
        for r in 0..6 {
            for c in 0..6 {
                v[r][c] = (0..6)
                    .flat_map(|a| (0..6).map(move |b| (a, b)))
                    .map(|(a, b)| BT[r][a] * d[a * 6 + b] * BT[c][b])
                    .sum();
            }
        }
        for y in 0..4 {
            for x in 0..4 {
                let mut s = 0.0;
                for r in 0..6 {
                    for c in 0..6 {
                        s += AT[y][r] * v[r][c] * f64::from(u[(r * 6 + c) * 16]) * AT[x][c];
                    }
                }
                let direct: f64 = (0..3)
                    .flat_map(|a| (0..3).map(move |b| (a, b)))
                    .map(|(a, b)| d[(y + a) * 6 + x + b] * f64::from(w[a * 3 + b]))
                    .sum();
                assert!((s - direct).abs() < 1e-5, "({y},{x}): {s} vs {direct}");
            }
        }
        assert!(pack_winograd_f43(&w[..8], 1, 1).is_empty());
    }
}
