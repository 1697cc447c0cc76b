//! Metrics: the process-wide Prometheus recorder the admin API renders.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The Prometheus recorder's handle. The `metrics` facade has one recorder
/// per process, so it is installed on first use and shared: a second proxy
/// in the same process (tests) renders the same metrics. If another
/// recorder was installed first, a detached one serves, rendering nothing
/// that was recorded.
pub fn prometheus_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => handle,
            Err(e) => {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will be empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        })
        .clone()
}
