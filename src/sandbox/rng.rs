//! Deterministic hashing and a tiny seeded RNG: every generated value is a pure function of
//! (seed, entity set, row ordinal, revision, field tag), so pages render without stored rows.

/// SplitMix64 finaliser: a fast, well-mixed 64-bit permutation.
#[inline(always)]
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a row-level key: the base every field hash of one row derives from.
#[inline(always)]
pub fn row_key(seed: u64, set: u32, ordinal: u64) -> u64 {
    mix(seed ^ mix(((set as u64) << 56) ^ ordinal))
}

/// Hash of one field (by tag) of a row whose base key is `key`.
#[inline(always)]
pub fn field(key: u64, tag: u64) -> u64 {
    mix(key ^ tag.wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

/// A uniform integer in `lo..=hi` from a hash.
#[inline(always)]
pub fn range(h: u64, lo: i64, hi: i64) -> i64 {
    let span = (hi - lo + 1) as u64;
    lo + ((h >> 11) % span) as i64
}

/// True with probability `pct` percent.
#[inline(always)]
pub fn pct(h: u64, pct: u64) -> bool {
    (h >> 7) % 100 < pct
}

/// Picks an element of a non-empty slice.
#[inline(always)]
pub fn pick<T: Copy>(h: u64, items: &[T]) -> T {
    items[((h >> 17) % items.len() as u64) as usize]
}

/// Sequential deterministic generator (SplitMix64) for mutation rounds and fault draws.
#[derive(Debug, Clone)]
pub struct SeqRng(u64);

impl SeqRng {
    pub fn new(seed: u64) -> Self {
        Self(mix(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
