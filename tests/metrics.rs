//! The metrics a known workload leaves, read the way Prometheus reads them:
//! a recorder is installed in this process, Sluice runs in it in front of
//! a primary and a replica, and the rendered exposition text is parsed by
//! the `prometheus_client` Python parser (the interop venv; see
//! .ci/install-interop.sh). One test only: the recorder is per process.
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

const INSTALL: &str = "run .ci/install-interop.sh (as root) to install prometheus_client in .venv";

/// Turns the exposition text into samples with the Python parser.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append([s.name, s.labels, repr(float(s.value))])
json.dump(samples, sys.stdout)
"#;

/// A parsed scrape: (name, sorted labels) → value.
struct Scrape(BTreeMap<(String, Vec<(String, String)>), f64>);

impl Scrape {
    fn take(handle: &PrometheusHandle) -> Scrape {
        let text = handle.render();
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: {INSTALL}",
            python.display()
        );
        let mut child = Command::new(&python)
            .args(["-c", PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write the exposition text");
        let out = child.wait_with_output().expect("python runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("No module named 'prometheus_client'"),
            "the venv lacks prometheus_client: {INSTALL}"
        );
        assert!(
            out.status.success(),
            "the parser refused the text: {stderr}\n{text}"
        );
        // Values as text: JSON has no NaN (an unknown lag).
        let samples: Vec<(String, BTreeMap<String, String>, String)> =
            serde_json::from_slice(&out.stdout).expect("parser output is JSON");
        Scrape(
            samples
                .into_iter()
                .map(|(name, labels, value)| {
                    let value = value.parse().expect("a float");
                    ((name, labels.into_iter().collect()), value)
                })
                .collect(),
        )
    }

    /// The value of the sample `name` with exactly `labels` (0 if absent).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.0
            .get(&(name.to_string(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum over every sample named `name` whose labels include `with`.
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|((n, labels), _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    fn names(&self) -> std::collections::BTreeSet<&str> {
        self.0.keys().map(|(n, _)| n.as_str()).collect()
    }
}

#[tokio::test]
async fn a_known_workload_leaves_the_counts_it_implies() {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("install the recorder");
    let p = pair("read_your_writes_ms = 0\n").await;
    let primary = "primary";
    let replica = "replica-1";

    // Client A: five reads, three writes, one transaction.
    let mut a = connect(p.sluice).await;
    for _ in 0..5 {
        assert_eq!(
            whereami(&mut a, "SELECT v FROM dbo.whereami").await,
            "replica"
        );
    }
    for _ in 0..3 {
        run(&mut a, "INSERT INTO dbo.items (name) VALUES (N'w')").await;
    }
    run(&mut a, "BEGIN TRANSACTION").await;
    run(&mut a, "UPDATE dbo.items SET name = N't'").await;
    run(&mut a, "COMMIT").await;

    // Client B: a temp table pins it; its read stays on the primary.
    let mut b = connect(p.sluice).await;
    run(&mut b, "CREATE TABLE #t (n INT)").await;
    assert_eq!(
        whereami(&mut b, "SELECT v FROM dbo.whereami").await,
        "primary"
    );

    // One failed login.
    let wrong = tiberius_config(p.sluice, USER, "not the password");
    assert!(connect_with(wrong).await.is_err());

    let s = Scrape::take(&handle);
    let requests = |target, backend, reason| {
        s.value(
            "sluice_requests_total",
            &[("target", target), ("backend", backend), ("reason", reason)],
        )
    };
    let report = format!("{:?}", s.0);
    assert_eq!(requests("replica", replica, "read"), 5.0, "{report}");
    // The three INSERTs and the CREATE TABLE #t.
    assert_eq!(requests("primary", primary, "write"), 3.0 + 1.0, "{report}");
    assert_eq!(
        requests("primary", primary, "transaction_control"),
        1.0,
        "{report}"
    );
    // The UPDATE and the COMMIT inside the transaction.
    assert_eq!(
        requests("primary", primary, "open_transaction"),
        2.0,
        "{report}"
    );
    assert_eq!(requests("primary", primary, "pinned"), 1.0, "{report}");
    assert_eq!(
        s.sum("sluice_requests_total", &[]),
        5.0 + 4.0 + 1.0 + 2.0 + 1.0,
        "{report}"
    );
    assert_eq!(
        s.sum("sluice_requests_total", &[("target", "replica")]),
        5.0
    );

    let classified = |class| s.value("sluice_classifications_total", &[("class", class)]);
    assert_eq!(classified("read"), 6.0, "{report}");
    assert_eq!(classified("write"), 3.0 + 1.0 + 1.0, "{report}"); // INSERTs, UPDATE, CREATE
    assert_eq!(classified("transaction_control"), 2.0, "{report}");
    let cache = |result| s.value("sluice_classifier_cache_total", &[("result", result)]);
    // Distinct texts miss once each; the repeats hit.
    assert_eq!(cache("miss"), 6.0, "{report}");
    assert_eq!(cache("hit"), 4.0 + 2.0 + 1.0, "{report}");

    assert_eq!(s.value("sluice_transactions_total", &[]), 1.0, "{report}");
    assert_eq!(
        s.value("sluice_pins_total", &[("reason", "temp_table")]),
        1.0,
        "{report}"
    );
    assert_eq!(s.value("sluice_pinned_sessions", &[]), 1.0, "{report}");

    let logins = |result| s.value("sluice_logins_total", &[("result", result)]);
    assert_eq!(logins("ok"), 2.0, "{report}");
    assert_eq!(logins("bad_password"), 1.0, "{report}");

    assert_eq!(
        s.value("sluice_clients", &[("state", "idle")]),
        2.0,
        "{report}"
    );
    assert_eq!(
        s.value("sluice_clients", &[("state", "active")]),
        0.0,
        "{report}"
    );
    assert_eq!(
        s.value("sluice_clients", &[("state", "waiting")]),
        0.0,
        "{report}"
    );
    assert_eq!(s.value("sluice_read_retries_total", &[]), 0.0);
    assert_eq!(s.sum("sluice_errors_total", &[]), 0.0, "{report}");
    assert_eq!(s.sum("sluice_backend_state_changes_total", &[]), 0.0);
    assert!(s.value("sluice_client_bytes_received_total", &[]) > 0.0);
    assert!(s.value("sluice_client_bytes_sent_total", &[]) > 0.0);
    assert_eq!(
        s.value(
            "sluice_backend_state",
            &[("backend", replica), ("state", "up")]
        ),
        1.0,
        "{report}"
    );
    assert_eq!(
        s.value(
            "sluice_backend_state",
            &[("backend", replica), ("state", "down")]
        ),
        0.0
    );
    assert!(
        s.value(
            "sluice_pool_connections",
            &[("backend", replica), ("state", "open")]
        ) >= 1.0,
        "{report}"
    );
    // A checkout per read, or one held for the session.
    let checkouts = if pool_mode() == "session" { 1.0 } else { 5.0 };
    assert_eq!(
        s.value(
            "sluice_pool_checkout_wait_seconds_count",
            &[("backend", replica)]
        ),
        checkouts,
        "{report}"
    );
    let durations = s.sum("sluice_request_duration_seconds_count", &[]);
    assert_eq!(durations, 13.0, "{report}");

    // The sessions end: their gauges come back down, and every backend
    // connection is back in its pool.
    drop(a);
    drop(b);
    let settled = eventually(Duration::from_secs(5), || {
        let s = Scrape::take(&handle);
        async move {
            let pooled = [primary, replica].iter().all(|backend| {
                let open = s.value(
                    "sluice_pool_connections",
                    &[("backend", backend), ("state", "open")],
                );
                let idle = s.value(
                    "sluice_pool_connections",
                    &[("backend", backend), ("state", "idle")],
                );
                open >= 1.0 && open == idle
            });
            // The monitor's first checks ran (they time themselves).
            let checked = s
                .names()
                .contains("sluice_health_check_duration_seconds_count");
            pooled
                && checked
                && s.value("sluice_pinned_sessions", &[]) == 0.0
                && s.value("sluice_clients", &[("state", "idle")]) == 0.0
        }
    })
    .await;
    assert!(settled, "gauges did not return to 0: {}", handle.render());
}

/// The benchmarks' CPU figure ([`common::process::cpu_seconds`]) keeps the
/// time of a thread that exited during the phase. Summing the live threads'
/// schedstat did not: when one of Sluice's blocking-pool threads (password
/// checks) went idle and exited mid-phase, its CPU time left the phase's
/// figure, which came out too small, even negative.
#[test]
fn cpu_time_counts_threads_that_exited() {
    use common::process::cpu_seconds;
    let pid = std::process::id();
    let before = cpu_seconds(pid);
    let live_before = live_threads_schedstat_ns(pid).expect("schedstat");
    std::thread::spawn(|| {
        let start = std::time::Instant::now();
        let mut spins = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    })
    .join()
    .expect("spinning thread");
    let burned = cpu_seconds(pid) - before;
    let live = (live_threads_schedstat_ns(pid).expect("schedstat") - live_before) as f64 / 1e9;
    assert!(burned >= 0.15, "the process used {burned:.3} s");
    // Other tests' threads count in both; the exited one only in the first.
    assert!(
        burned - live >= 0.15,
        "process {burned:.3} s, live threads {live:.3} s"
    );
}

/// The summed on-CPU nanoseconds of the live threads of `pid` (the first
/// field of each thread's schedstat): how the benchmarks used to read it.
fn live_threads_schedstat_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}
