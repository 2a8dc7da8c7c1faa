//! The bloom filter over a segment's trace ids, held in memory by readers.

/// Bloom filter bits per distinct trace id (about 1% false positives with 7 probes).
const BLOOM_BITS_PER_KEY: usize = 10;
const BLOOM_PROBES: u64 = 7;

/// Two independent 64-bit hashes of an id (ids are usually random, but not always).
pub(crate) fn hashes(id: &[u8; 16]) -> (u64, u64) {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let a = u64::from_le_bytes(id[..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(id[8..].try_into().expect("8 bytes"));
    let h1 = mix(a ^ mix(b));
    let h2 = mix(b.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ mix(a)) | 1;
    (h1, h2)
}

/// A bloom filter over trace ids.
#[derive(Debug, Clone)]
pub struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    /// An empty filter sized for `n` keys.
    pub(crate) fn with_keys(n: usize) -> Self {
        let bits = (n * BLOOM_BITS_PER_KEY).max(64);
        Bloom {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    /// Adds `id`.
    pub(crate) fn insert(&mut self, id: &[u8; 16]) {
        let bits = self.words.len() as u64 * 64;
        let (h1, h2) = hashes(id);
        for i in 0..BLOOM_PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Whether `id` may be in the set (false: certainly not). A filter of no words (which
    /// the writer never makes, and opening an index refuses) says "may".
    pub fn may_contain(&self, id: &[u8; 16]) -> bool {
        let bits = self.words.len() as u64 * 64;
        if bits == 0 {
            return true;
        }
        let (h1, h2) = hashes(id);
        (0..BLOOM_PROBES).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    /// A filter from its stored words.
    pub(crate) fn from_words(words: Vec<u64>) -> Self {
        Bloom { words }
    }

    /// The stored words.
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }

    /// Bytes held in memory.
    pub fn size(&self) -> usize {
        self.words.len() * 8
    }
}
