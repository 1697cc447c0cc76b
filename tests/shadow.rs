//! Shadow mode seen from a real driver and the metrics: the primary and the
//! replica hold different rows in `dbo.whereami`, so a shadowed read of it
//! must come back from the primary and be reported as a mismatch, while a
//! read both agree on is a match and a write never reaches the replica.
//! One test: the metrics recorder is per process.
mod common;

use std::time::Duration;

use common::*;
use iridium_core::SessionManager;

const SHADOW: &str = "mode = \"shadow\"\nshadow_sample = 1.0\nread_your_writes_ms = 0\n";
const REPLICA: &str = "replica-1";
/// Shadow runs finish in the background: wait for them this long at most.
const SETTLE: Duration = Duration::from_secs(10);

/// The value of the sample `name` whose labels include every `labels`
/// pair, summed over the samples that match (0 when none does).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let (sample, rest) = key.split_once('{').unwrap_or((key, ""));
            let matches = sample == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn runs(text: &str, result: &str) -> f64 {
    metric(
        text,
        "sluice_shadow_runs_total",
        &[("backend", REPLICA), ("result", result)],
    )
}

fn all_runs(text: &str) -> f64 {
    ["match", "mismatch", "error"]
        .iter()
        .map(|r| runs(text, r))
        .sum()
}

/// Waits until `check` holds for the rendered metrics; the text on failure.
async fn settled(
    handle: &metrics_exporter_prometheus::PrometheusHandle,
    check: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let ok = eventually(SETTLE, || {
        let holds = check(&handle.render());
        async move { holds }
    })
    .await;
    if ok {
        Ok(())
    } else {
        Err(handle.render())
    }
}

/// The rows of `dbo.items` on one backend, read on its engine directly.
fn items(backend: &Backend) -> String {
    let session = backend.engine.create_session();
    let rows = iridium_core::StatementExecutor::execute_session_batch_sql(
        &backend.engine,
        session,
        "SELECT name FROM dbo.items",
    );
    let _ = backend.engine.close_session(session);
    format!("{rows:?}")
}

#[tokio::test]
async fn shadow_mode_serves_the_primary_and_reports_the_replicas_differences() {
    let handle = sluice::metrics::prometheus_handle();
    let p = pair(SHADOW).await;
    let mut c = connect(p.sluice).await;

    // A read split mode would send to the replica is answered by the
    // primary; its shadow on the replica differs (other row): a mismatch.
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami").await,
        "primary"
    );
    settled(&handle, |m| runs(m, "mismatch") >= 1.0)
        .await
        .unwrap_or_else(|m| panic!("no mismatch counted:\n{m}"));

    // A parameterised read (sp_executesql) is shadowed too.
    let row = c
        .query("SELECT v FROM dbo.whereami WHERE v <> @P1", &[&"nothing"])
        .await
        .expect("query runs")
        .into_row()
        .await
        .expect("row arrives")
        .expect("a row");
    assert_eq!(row.get::<&str, _>("v"), Some("primary"));
    settled(&handle, |m| runs(m, "mismatch") >= 2.0)
        .await
        .unwrap_or_else(|m| panic!("the parameterised read was not compared:\n{m}"));

    // A read both servers answer alike is a match.
    assert_eq!(scalar_i32(&mut c, "SELECT 42 AS answer").await, Some(42));
    settled(&handle, |m| runs(m, "match") >= 1.0)
        .await
        .unwrap_or_else(|m| panic!("no match counted:\n{m}"));

    // A write runs on the primary only: never shadowed.
    run(&mut c, "INSERT INTO dbo.items (name) VALUES (N'written')").await;
    assert!(items(&p.primary).contains("written"));
    // Nor is a read inside a transaction, though it would be routed there.
    run(&mut c, "BEGIN TRANSACTION").await;
    assert_eq!(
        whereami(&mut c, "SELECT v FROM dbo.whereami").await,
        "primary"
    );
    run(&mut c, "COMMIT TRANSACTION").await;
    // One more plain read; then all four shadow runs must be counted.
    assert_eq!(scalar_i32(&mut c, "SELECT 7 AS seven").await, Some(7));
    settled(&handle, |m| all_runs(m) >= 4.0)
        .await
        .unwrap_or_else(|m| panic!("the last read was not compared:\n{m}"));

    let text = handle.render();
    assert!(
        !items(&p.replica).contains("written"),
        "the write reached the replica"
    );
    assert_eq!(
        all_runs(&text),
        4.0,
        "only the four plain reads ran:\n{text}"
    );
    assert_eq!(runs(&text, "error"), 0.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "sluice_shadow_would_route_total",
            &[("reason", "read")]
        ),
        4.0,
        "the four plain reads, not the write or the read in a transaction:\n{text}"
    );
    assert_eq!(
        metric(&text, "sluice_requests_total", &[("target", "replica")]),
        0.0,
        "no client request ran on a replica:\n{text}"
    );
    assert_eq!(metric(&text, "sluice_shadow_dropped_total", &[]), 0.0);
}
