//! The file checksum: a fast, non-cryptographic 64-bit hash (it detects corruption, it does
//! not authenticate). Documented in `docs/FORMAT.md` so other implementations can compute it.
//!
//! The input is consumed in 32-byte blocks as four little-endian u64 lanes; each lane is
//! `lane = rotl(lane ^ word, 29) * P1`. A final partial block is zero padded. The result is
//! `fold(lanes) ^ len`, avalanched.

const P1: u64 = 0x9E37_79B9_7F4A_7C15;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const SEEDS: [u64; 4] = [0x243F_6A88_85A3_08D3, 0x1319_8A2E_0370_7344, 0xA409_3822_299F_31D0, 0x082E_FA98_EC4E_6C89];

#[inline(always)]
fn round(lane: u64, word: u64) -> u64 {
    (lane ^ word).rotate_left(29).wrapping_mul(P1)
}

/// Streaming state, so the writer and the reader can hash the header with its checksum
/// field read as zero without copying the file.
#[derive(Clone, Debug)]
pub struct Hasher {
    lanes: [u64; 4],
    buf: [u8; 32],
    buf_len: usize,
    total: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Self { lanes: SEEDS, buf: [0; 32], buf_len: 0, total: 0 }
    }

    #[inline(always)]
    fn block(&mut self, b: &[u8]) {
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let w = u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            *lane = round(*lane, w);
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (32 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 32 {
                return;
            }
            let buf = self.buf;
            self.block(&buf);
            self.buf_len = 0;
        }
        let mut chunks = data.chunks_exact(32);
        for c in &mut chunks {
            self.block(c);
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    pub fn finish(mut self) -> u64 {
        if self.buf_len > 0 {
            let mut last = [0u8; 32];
            last[..self.buf_len].copy_from_slice(&self.buf[..self.buf_len]);
            self.block(&last);
        }
        let [a, b, c, d] = self.lanes;
        let mut h = a.rotate_left(1) ^ b.rotate_left(7) ^ c.rotate_left(12) ^ d.rotate_left(18);
        h ^= self.total;
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P1);
        h ^ (h >> 32)
    }
}

/// Checksum of a whole file image: the 8 bytes at `CHECKSUM_OFFSET` are hashed as zeros.
pub fn file_checksum(file: &[u8]) -> u64 {
    let mut h = Hasher::new();
    let off = CHECKSUM_OFFSET;
    if file.len() < off + 8 {
        h.update(file);
        return h.finish();
    }
    h.update(&file[..off]);
    h.update(&[0u8; 8]);
    h.update(&file[off + 8..]);
    h.finish()
}

/// Byte offset of `Header::checksum`.
pub const CHECKSUM_OFFSET: usize = 48;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_one_shot_and_detects_flips() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut one = Hasher::new();
        one.update(&data);
        let one = one.finish();
        for split in [0, 1, 31, 32, 33, 500, 999, 1000] {
            let mut h = Hasher::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(h.finish(), one, "split at {split}");
        }
        for i in [0, 17, 511, 999] {
            let mut d = data.clone();
            d[i] ^= 0x10;
            let mut h = Hasher::new();
            h.update(&d);
            assert_ne!(h.finish(), one, "flip at {i} undetected");
        }
        // Trailing zeros change the length and so the hash.
        let mut h = Hasher::new();
        h.update(&data);
        h.update(&[0]);
        assert_ne!(h.finish(), one);
    }

    #[test]
    fn checksum_offset_matches_header() {
        assert_eq!(core::mem::offset_of!(super::super::records::Header, checksum), CHECKSUM_OFFSET);
    }
}
