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

/// A `metrics` recorder for unit tests (install it with
/// `metrics::with_local_recorder`): counters and gauges by name and
/// labels, read back with [`TestRecorder::value`].
#[derive(Default)]
pub(crate) struct TestRecorder {
    cells: std::sync::Mutex<
        std::collections::HashMap<String, std::sync::Arc<std::sync::atomic::AtomicU64>>,
    >,
}

impl TestRecorder {
    fn cell(&self, key: &metrics::Key) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut cells = self.cells.lock().expect("test recorder lock");
        cells.entry(name).or_default().clone()
    }

    /// A counter's count, or a gauge's value, as `name{k=v,...}` (labels
    /// sorted); 0 when never recorded.
    pub(crate) fn value(&self, key: &str, gauge: bool) -> f64 {
        let cells = self.cells.lock().expect("test recorder lock");
        let raw = cells
            .get(key)
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::SeqCst));
        if gauge {
            f64::from_bits(raw)
        } else {
            raw as f64
        }
    }
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// A valid configuration with one user, a primary and `extra` appended
/// (tables such as `[[routing.rules]]` or `[cache]`).
pub(crate) fn config_with(extra: &str) -> crate::config::Config {
    let text = format!(
        r#"
[listen]
address = "127.0.0.1:1"
[[users]]
name = "a"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3nB0ajhdTWjCXUyH8nHnUoXjEpGFR1Ou3X3Pw2EXgrk"
[primary]
address = "127.0.0.1:2"
user = "sa"
password = "x"
{extra}
"#
    );
    crate::config::Config::parse(&text, std::path::Path::new("t")).expect("valid config")
}
