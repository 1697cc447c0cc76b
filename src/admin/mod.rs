//! The admin HTTP API on `[admin] address`: Prometheus metrics, status,
//! the client list, and the liveness and readiness probes. One request per
//! connection; every endpoint but the probes needs the bearer token when
//! `admin.token_env` is set.

pub mod http;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};

use crate::server::Proxy;
use http::{read_request, HeadError, HttpRequest, HttpResponse};

/// Time a connection has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// How often histograms are folded into what `/metrics` renders.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What each admin request gets.
pub struct AdminApi {
    proxy: Arc<Proxy>,
    token: Option<String>,
    metrics: PrometheusHandle,
}

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Healthz,
    Readyz,
    Metrics,
    Status,
    Clients,
    Reload,
}

impl Endpoint {
    fn of(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/healthz" => Endpoint::Healthz,
            "/readyz" => Endpoint::Readyz,
            "/metrics" => Endpoint::Metrics,
            "/status" => Endpoint::Status,
            "/clients" => Endpoint::Clients,
            "/reload" => Endpoint::Reload,
            _ => return None,
        })
    }

    /// Reads are GET; the one endpoint that changes something is POST.
    fn method(self) -> &'static str {
        match self {
            Endpoint::Reload => "POST",
            _ => "GET",
        }
    }

    /// Probes answer anyone who can reach the address.
    fn needs_token(self) -> bool {
        !matches!(self, Endpoint::Healthz | Endpoint::Readyz)
    }
}

impl AdminApi {
    pub fn new(proxy: Arc<Proxy>, token: Option<String>) -> AdminApi {
        AdminApi {
            proxy,
            token,
            metrics: crate::metrics::prometheus_handle(),
        }
    }

    /// Serves the admin API on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let upkeep = self.metrics.clone();
        let _upkeep = AbortOnDrop(tokio::spawn(async move {
            let mut interval = crate::timer::Interval::new(UPKEEP_INTERVAL);
            loop {
                interval.tick().await;
                upkeep.run_upkeep();
            }
        }));
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let api = self.clone();
                    tokio::spawn(async move {
                        api.serve_connection(tcp, peer).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn serve_connection(&self, mut tcp: TcpStream, peer: SocketAddr) {
        let response = match read_request(&mut tcp, READ_TIMEOUT).await {
            Ok(request) => self.respond(&request).await,
            Err(HeadError::Closed) => return,
            Err(e @ HeadError::Malformed(_)) => HttpResponse::text(400, format!("{e}\n")),
            Err(e @ HeadError::TooLarge) => HttpResponse::text(431, format!("{e}\n")),
            Err(e @ HeadError::Timeout) => HttpResponse::text(408, format!("{e}\n")),
        };
        if response.status >= 400 {
            tracing::debug!(%peer, status = response.status, "admin request refused");
        }
        let write = response.write_to(&mut tcp);
        tokio::time::timeout(READ_TIMEOUT, write).await.ok();
    }

    /// Route, method, token, then the endpoint.
    pub async fn respond(&self, request: &HttpRequest) -> HttpResponse {
        let Some(endpoint) = Endpoint::of(&request.path) else {
            return HttpResponse::text(
                404,
                "not found: try /status, /clients, /metrics, /healthz, /readyz or POST /reload\n",
            );
        };
        let method = endpoint.method();
        if request.method != method {
            return HttpResponse::text(405, format!("only {method} is allowed here\n"))
                .with_header(format!("Allow: {method}"));
        }
        if endpoint.needs_token() && !self.authorized(request.authorization.as_deref()) {
            return HttpResponse::text(401, "a bearer token is required (admin.token_env)\n")
                .with_header("WWW-Authenticate: Bearer");
        }
        match endpoint {
            Endpoint::Healthz => HttpResponse::text(200, "ok\n"),
            Endpoint::Readyz if self.proxy.shutdown.is_draining() => {
                HttpResponse::text(503, "draining\n")
            }
            Endpoint::Readyz => HttpResponse::text(200, "ready\n"),
            Endpoint::Metrics => {
                let mut response = HttpResponse::text(200, self.metrics.render());
                response.content_type = "text/plain; version=0.0.4";
                response
            }
            Endpoint::Status => HttpResponse::json(&status::status(&self.proxy)),
            Endpoint::Clients => HttpResponse::json(&status::clients(&self.proxy)),
            Endpoint::Reload => match self.proxy.reload().await {
                Ok(reloaded) => HttpResponse::json(&serde_json::json!(reloaded)),
                // The message `sluice check` prints for the same file.
                Err(e) => HttpResponse::text(400, format!("{e}\n")),
            },
        }
    }

    /// Without a configured token everyone is; with one, only a request
    /// bearing it (compared in constant time).
    fn authorized(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some((scheme, given)) = authorization.and_then(|value| value.split_once(' ')) else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && bool::from(given.trim().as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// Stops a background task when its owner ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
