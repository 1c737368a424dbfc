//! Small shared helpers: a fast random generator, percentiles, number extraction from JSON text.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// xorshift64*: plenty for picking recipients, and free of dependencies.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(stream: u64) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = now
            ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(std::process::id());
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn hex(&mut self, chars: usize) -> String {
        (0..chars)
            .map(|_| char::from_digit((self.next_u64() % 16) as u32, 16).unwrap_or('0'))
            .collect()
    }
}

/// Nanoseconds as milliseconds, rounded to the microsecond.
pub fn ms(ns: u64) -> f64 {
    (ns as f64 / 1_000.0).round() / 1_000.0
}

/// Latency figures of a set of samples (nanoseconds).
pub struct Summary {
    pub count: usize,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Summary {
    /// Sorts `samples` and takes nearest-rank percentiles.
    pub fn of(samples: &mut [u64]) -> Self {
        samples.sort_unstable();
        Self {
            count: samples.len(),
            p50: percentile(samples, 0.50),
            p99: percentile(samples, 0.99),
            max: samples.last().copied().unwrap_or(0),
        }
    }

    pub fn json(&self) -> Value {
        json!({ "count": self.count, "p50_ms": ms(self.p50), "p99_ms": ms(self.p99), "max_ms": ms(self.max) })
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The unsigned integer after `key` (such as `"sent_ns":`) in JSON text, without parsing it all.
pub fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = &text[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// The median of a few rates (the middle one; the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        let s = Summary::of(&mut samples);
        assert_eq!((s.count, s.p50, s.p99, s.max), (100, 50, 99, 100));
        assert_eq!(Summary::of(&mut []).max, 0);
        assert_eq!(Summary::of(&mut [7]).p99, 7);
    }

    #[test]
    fn numbers_are_found_after_their_key() {
        let data = br#"{"notification":{"data":{"seq":12,"sent_ns":123456789}},"unread":3}"#;
        assert_eq!(number_after(data, br#""sent_ns":"#), Some(123_456_789));
        assert_eq!(number_after(data, br#""seq":"#), Some(12));
        assert_eq!(number_after(data, br#""missing":"#), None);
        assert_eq!(number_after(br#"{"seq":"x"}"#, br#""seq":"#), None);
    }

    #[test]
    fn random_numbers_stay_in_range() {
        let mut rng = Rng::seeded(1);
        assert!((0..1000).all(|_| rng.below(7) < 7));
        assert_eq!(rng.hex(40).len(), 40);
    }
}
