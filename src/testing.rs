//! Helpers shared by unit tests.

/// A xorshift64 generator for the no-panic tests: deterministic, no crate.
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Up to `max_len` random bytes.
    pub(crate) fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// `count` variants of `seed`: bytes flipped, overwritten with 0x00 or
    /// 0xFF runs (length fields), inserted, removed, or the input cut short.
    pub(crate) fn mutations(&mut self, seed: &[u8], count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|_| self.mutate(seed)).collect()
    }

    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len());
            match self.below(6) {
                0 if !v.is_empty() => v[at] ^= 1 << self.below(8),
                1 if !v.is_empty() => v[at] = self.next() as u8,
                2 => {
                    let fill = if self.below(2) == 0 { 0x00 } else { 0xFF };
                    let end = (at + 1 + self.below(4)).min(v.len());
                    v[at..end].iter_mut().for_each(|b| *b = fill);
                }
                3 => v.insert(at.min(v.len()), self.next() as u8),
                4 if !v.is_empty() => {
                    v.remove(at);
                }
                _ => v.truncate(at),
            }
        }
        v
    }
}
