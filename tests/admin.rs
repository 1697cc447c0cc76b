//! Operating Sluice live: the admin HTTP API (probes, status, clients,
//! metrics, the token), `sluice status`, and the graceful drain on SIGTERM.
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);

/// An HTTP response as the test sees it.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends `raw` as is and reads the whole answer (the server closes).
async fn send_raw(admin: SocketAddr, raw: &[u8]) -> Reply {
    let mut tcp = tokio::net::TcpStream::connect(admin)
        .await
        .expect("admin API");
    tcp.write_all(raw).await.expect("send request");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.expect("read response");
    let text = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn get(admin: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: sluice\r\n{authorization}\r\n");
    send_raw(admin, request.as_bytes()).await
}

/// Sluice in front of a fresh primary, with the admin API on port 0;
/// `admin` is appended to the `[admin]` table.
async fn sluice_with_admin(
    admin: &str,
) -> (
    Backend,
    std::sync::Arc<sluice::server::Proxy>,
    SocketAddr,
    SocketAddr,
) {
    let primary = Backend::start().await;
    let text = config_text(primary.addr, &[]) + "[admin]\naddress = \"127.0.0.1:0\"\n" + admin;
    let (proxy, sluice) = start_proxy(parse_config(&text)).await;
    let admin = proxy
        .start_admin()
        .await
        .expect("admin API starts")
        .expect("[admin] is configured");
    (primary, proxy, sluice, admin)
}

async fn connect_as_app(sluice: SocketAddr, application: &str) -> TestClient {
    let mut config = tiberius_config(sluice, USER, PASSWORD);
    config.application_name(application);
    connect_with(config).await.expect("login through sluice")
}

/// The probes, `/status` after some queries, and `/clients` with a
/// client inside a transaction, then outside it.
#[tokio::test]
async fn status_and_clients_show_backends_and_sessions() {
    let (primary, proxy, sluice, admin) = sluice_with_admin("").await;
    primary.exec("CREATE TABLE dbo.t (v INT)");
    assert_eq!(get(admin, "/healthz", None).await.status, 200);
    assert_eq!(get(admin, "/readyz", None).await.status, 200);

    let mut client = connect_as_app(sluice, "admin-test").await;
    assert_eq!(scalar_i32(&mut client, "SELECT 1").await, Some(1));
    run(&mut client, "BEGIN TRAN; INSERT INTO dbo.t VALUES (1)").await;

    let status = get(admin, "/status", None).await;
    assert_eq!(status.status, 200);
    assert!(status.head.contains("Content-Type: application/json"));
    let status = status.json();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["draining"], false);
    assert!(status["uptime_seconds"].is_u64());
    assert_eq!(status["config"]["path"], "<test>");
    assert_eq!(status["config"]["hash"].as_str().map(str::len), Some(64));
    assert_eq!(status["clients"]["logged_in"], 1);
    assert_eq!(status["clients"]["in_transaction"], 1);
    let primary_status = &status["backends"][0];
    assert_eq!(primary_status["name"], "primary");
    assert_eq!(primary_status["role"], "primary");
    assert!(primary_status["state"].is_string());
    assert!(primary_status["lag_ms"].is_null());
    // The transaction holds a connection.
    assert_eq!(primary_status["pool"]["in_use"], 1, "{status}");

    let clients = get(admin, "/clients", None).await.json();
    let listed = &clients["clients"][0];
    assert_eq!(listed["user"], USER);
    assert_eq!(listed["application"], "admin-test");
    assert_eq!(listed["database"], "master");
    assert_eq!(listed["in_transaction"], true);
    assert_eq!(listed["connections_held"], 1);
    assert_eq!(listed["busy"], false);
    assert!(listed["spid"].as_u64().is_some_and(|spid| spid >= 51));

    run(&mut client, "COMMIT").await;
    let clients = get(admin, "/clients", None).await.json();
    assert_eq!(clients["clients"][0]["in_transaction"], false);
    // In session mode the session keeps its connection; in transaction
    // mode it went back to the pool with the COMMIT.
    let held_between_requests = u64::from(pool_mode() == "session");
    assert_eq!(
        clients["clients"][0]["connections_held"],
        held_between_requests
    );

    run(&mut client, "CREATE TABLE #work (n INT)").await;
    let clients = get(admin, "/clients", None).await.json();
    assert_eq!(clients["clients"][0]["pin"], "temp_table");
    assert_eq!(clients["clients"][0]["connections_held"], 1);

    let metrics = get(admin, "/metrics", None).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .head
        .contains("Content-Type: text/plain; version=0.0.4"));

    drop(client);
    let admin_copy = admin;
    assert!(
        eventually(LIMIT, || async move {
            get(admin_copy, "/clients", None).await.json()["clients"]
                .as_array()
                .is_some_and(Vec::is_empty)
        })
        .await,
        "a client that left is no longer listed"
    );
    proxy.drain();
    assert_eq!(get(admin, "/readyz", None).await.status, 503);
    assert_eq!(get(admin, "/healthz", None).await.status, 200);
    assert_eq!(get(admin, "/status", None).await.json()["draining"], true);
}

/// With `admin.token_env`, every endpoint but the probes needs the token.
#[tokio::test]
async fn the_admin_token_is_enforced() {
    std::env::set_var("SLUICE_TEST_ADMIN_TOKEN", "s3cret-token");
    let (_primary, _proxy, _sluice, admin) =
        sluice_with_admin("token_env = \"SLUICE_TEST_ADMIN_TOKEN\"\n").await;
    for path in ["/status", "/clients", "/metrics"] {
        let refused = get(admin, path, None).await;
        assert_eq!(refused.status, 401, "{path} without a token");
        assert!(refused.head.contains("WWW-Authenticate: Bearer"));
        assert_eq!(get(admin, path, Some("wrong")).await.status, 401);
        assert_eq!(get(admin, path, Some("s3cret-token2")).await.status, 401);
        assert_eq!(get(admin, path, Some("s3cret-token")).await.status, 200);
    }
    let basic = send_raw(
        admin,
        b"GET /status HTTP/1.1\r\nAuthorization: Basic s3cret-token\r\n\r\n",
    )
    .await;
    assert_eq!(basic.status, 401);
    let address = admin.to_string();
    let refused = sluice_status(&["--admin", &address]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--token-env"), "{stderr}");
    let with_token = [
        "--admin",
        &address,
        "--token-env",
        "SLUICE_TEST_ADMIN_TOKEN",
    ];
    assert!(sluice_status(&with_token).await.status.success());
    assert_eq!(get(admin, "/healthz", None).await.status, 200);
    assert_eq!(get(admin, "/readyz", None).await.status, 200);
}

/// Bad requests get a status, not a hang or a dropped connection.
#[tokio::test]
async fn malformed_requests_get_client_errors() {
    let (_primary, _proxy, _sluice, admin) = sluice_with_admin("").await;
    for raw in [
        &b"hello\r\n\r\n"[..],
        b"GET /status\r\n\r\n",
        b"GET /status HTTP/1.1\r\nbroken header\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello\r\n\r\n",
    ] {
        let reply = send_raw(admin, raw).await;
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(raw));
    }
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert_eq!(send_raw(admin, huge.as_bytes()).await.status, 431);
    assert_eq!(get(admin, "/nope", None).await.status, 404);
    let post = send_raw(admin, b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(post.status, 405);
    assert!(post.head.contains("Allow: GET"));
    // The API still answers.
    assert_eq!(get(admin, "/healthz", None).await.status, 200);
}

/// `sluice status` prints the backends as a table; an unreachable admin
/// API is an error that says what to check.
#[tokio::test]
async fn sluice_status_prints_tables() {
    let (_primary, _proxy, sluice, admin) = sluice_with_admin("").await;
    let _client = connect(sluice).await;
    let out = sluice_status(&["--admin", &admin.to_string()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("BACKEND  ROLE     STATE"), "{stdout}");
    assert!(lines[1].starts_with("primary  primary"), "{stdout}");
    assert!(stdout.contains("CLIENTS  ACTIVE  IDLE"), "{stdout}");
    assert!(stdout.contains("config <test>"), "{stdout}");

    let unreachable = format!("127.0.0.1:{}", free_port());
    let out = sluice_status(&["--admin", &unreachable]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the admin API"), "{stderr}");
}

/// Runs `sluice status` with `args`.
async fn sluice_status(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("status")
            .args(&args)
            .output()
            .expect("run sluice status")
    })
    .await
    .expect("sluice status ran")
}

/// The error a client gets for `sql`; panics if it succeeds.
async fn error_of(client: &mut TestClient, sql: &str) -> String {
    let results = match client.simple_query(sql).await {
        Ok(stream) => stream.into_results().await,
        Err(e) => Err(e),
    };
    match results {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => e.to_string(),
    }
}

/// The drain's time runs out while requests still run: one inside a
/// transaction whose result stalls between two rows, and (in transaction
/// pool mode) one waiting for the pool's only connection. Each client gets
/// Sluice's error instead of hanging until the process exits; the
/// transaction's connection is closed, so the server rolls it back, never
/// pooled; and every session has ended when the drain returns.
#[tokio::test]
async fn requests_still_running_when_the_drain_times_out_get_an_error() {
    use common::fake::{self, FakeOptions};
    let primary = fake::start_with(FakeOptions::default()).await;
    let text = config_text(primary.addr, &[])
        .replace(
            "login_timeout_ms = 5000\n",
            "login_timeout_ms = 5000\nshutdown_timeout_ms = 300\n",
        )
        .replace(
            "max_size = 8\n",
            "max_size = 1\ncheckout_timeout_ms = 60000\n",
        );
    let proxy = sluice::server::Proxy::new(parse_config(&text)).expect("proxy");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sluice");
    let sluice = listener.local_addr().expect("sluice address");
    let serving = tokio::spawn(proxy.clone().serve(listener));

    let mut streaming = connect(sluice).await;
    run(&mut streaming, "BEGIN TRAN").await;
    let stalled = format!("SELECT 1 /* {} */", fake::STALL_MID_RESULT);
    let streaming = tokio::spawn(async move { error_of(&mut streaming, &stalled).await });
    assert!(
        primary
            .wait_until(LIMIT, |f| !f.ran(fake::STALL_MID_RESULT).is_empty())
            .await,
        "the stalled query reached the backend"
    );
    let waiting = if pool_mode() == "transaction" {
        let mut client = connect(sluice).await;
        let request = tokio::spawn(async move { error_of(&mut client, "SELECT 1").await });
        let proxy = proxy.clone();
        let queued = eventually(LIMIT, || {
            let waiting = proxy.cluster().primary().pools().usage().waiting;
            async move { waiting == 1 }
        })
        .await;
        assert!(queued, "the second request waits for the pool");
        Some(request)
    } else {
        // In session mode the first client holds the only connection from
        // its login on: a second could not log in.
        None
    };

    proxy.drain();
    let drained = tokio::time::timeout(LIMIT, serving)
        .await
        .expect("the drain ends")
        .expect("serve ran");
    assert!(!drained.clean, "{drained:?}");
    assert_eq!(drained.remaining, 0, "every session closed itself");
    let error = tokio::time::timeout(LIMIT, streaming)
        .await
        .expect("the streaming client is answered")
        .expect("client task");
    assert!(error.contains("Sluice is shutting down"), "{error}");
    if let Some(waiting) = waiting {
        let error = tokio::time::timeout(LIMIT, waiting)
            .await
            .expect("the waiting client is answered")
            .expect("client task");
        assert!(error.contains("Sluice is shutting down"), "{error}");
    }
    assert!(
        primary
            .wait_until(LIMIT, |f| f
                .connections()
                .iter()
                .any(|c| c.closed_in_transaction))
            .await,
        "the transaction's connection was closed: {:?}",
        primary.connections()
    );
    assert!(
        !primary
            .connections()
            .iter()
            .any(|c| c.holds_open_transaction()),
        "{:?}",
        primary.connections()
    );
}

/// The drain, on the `sluice` process itself (signals are Unix's).
#[cfg(unix)]
mod drain {
    use super::*;
    use std::process::{Child, Stdio};
    use std::time::Instant;

    /// The `sluice` binary with a generated config; killed when dropped.
    pub(super) struct SluiceProcess {
        child: Child,
        pub(super) listen: SocketAddr,
        pub(super) admin: SocketAddr,
        log: std::path::PathBuf,
        config: std::path::PathBuf,
    }

    impl SluiceProcess {
        async fn start(primary: SocketAddr, name: &str, listen_extra: &str) -> SluiceProcess {
            SluiceProcess::start_with(primary, name, listen_extra, "", Some("info")).await
        }

        /// `tables` is appended to the config; `rust_log` is `RUST_LOG`
        /// (`None`: unset).
        pub(super) async fn start_with(
            primary: SocketAddr,
            name: &str,
            listen_extra: &str,
            tables: &str,
            rust_log: Option<&str>,
        ) -> SluiceProcess {
            let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let text = config_text(primary, &[]).replace(
                "address = \"127.0.0.1:0\"\n",
                &format!("address = \"{listen}\"\n{listen_extra}"),
            ) + &format!("[admin]\naddress = \"{admin}\"\n{tables}");
            let dir =
                std::env::temp_dir().join(format!("sluice-admin-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let config = dir.join("proxy.toml");
            std::fs::write(&config, text).expect("write proxy.toml");
            let log = dir.join("sluice.log");
            let out = std::fs::File::create(&log).expect("log file");
            let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
            match rust_log {
                Some(filter) => command.env("RUST_LOG", filter),
                None => command.env_remove("RUST_LOG"),
            };
            let child = command
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log file"))
                .stderr(out)
                .spawn()
                .expect("start sluice");
            let mut process = SluiceProcess {
                child,
                listen,
                admin,
                log,
                config,
            };
            process.wait_ready().await;
            process
        }

        pub(super) fn log(&self) -> String {
            std::fs::read_to_string(&self.log).unwrap_or_default()
        }

        async fn wait_ready(&mut self) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = self.child.try_wait().expect("sluice status") {
                    panic!("sluice exited ({status}):\n{}", self.log());
                }
                let ready = tokio::net::TcpStream::connect(self.admin).await.is_ok()
                    && tokio::net::TcpStream::connect(self.listen).await.is_ok();
                if ready {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "sluice not ready:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        fn signal(&self, signal: libc::c_int) {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
            assert_eq!(sent, 0, "kill({signal})");
        }

        async fn clients(&self) -> Vec<Value> {
            get(self.admin, "/clients", None).await.json()["clients"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }

        /// Waits for the process to exit and returns its exit code.
        async fn exit_code(&mut self) -> Option<i32> {
            let deadline = Instant::now() + LIMIT;
            loop {
                if let Some(status) = self.child.try_wait().expect("sluice status") {
                    return status.code();
                }
                assert!(
                    Instant::now() < deadline,
                    "sluice did not exit:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    impl Drop for SluiceProcess {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// A primary with `dbo.t`, the `sluice` process in front of it, and a
    /// client ("working") inside a transaction that inserted one row.
    async fn process_with_open_transaction(
        name: &str,
        shutdown_timeout_ms: u64,
    ) -> (Backend, SluiceProcess, TestClient) {
        let primary = Backend::start().await;
        primary.exec("CREATE TABLE dbo.t (v INT)");
        let listen = format!("shutdown_timeout_ms = {shutdown_timeout_ms}\n");
        let sluice = SluiceProcess::start(primary.addr, name, &listen).await;
        let mut working = connect_as_app(sluice.listen, "working").await;
        run(&mut working, "BEGIN TRAN; INSERT INTO dbo.t VALUES (1)").await;
        (primary, sluice, working)
    }

    /// Waits for `/readyz` to answer 503.
    async fn wait_not_ready(admin: SocketAddr) -> bool {
        eventually(LIMIT, || async move {
            get(admin, "/readyz", None).await.status == 503
        })
        .await
    }

    /// SIGTERM with one client inside a transaction and one idle: `/readyz`
    /// fails, the listener closes, the idle client is closed at once, the
    /// transaction's COMMIT still runs, then that client is closed too and
    /// Sluice exits 0.
    #[tokio::test]
    async fn sigterm_drains_then_exits_cleanly() {
        let (_primary, mut sluice, mut working) =
            process_with_open_transaction("drain", 20_000).await;
        let mut idle = connect_as_app(sluice.listen, "idle").await;
        assert_eq!(scalar_i32(&mut idle, "SELECT 1").await, Some(1));
        let clients = sluice.clients().await;
        assert_eq!(clients.len(), 2);

        sluice.signal(libc::SIGTERM);
        assert!(wait_not_ready(sluice.admin).await, "/readyz turns false");
        let listen = sluice.listen;
        assert!(
            eventually(LIMIT, || async move {
                tokio::net::TcpStream::connect(listen).await.is_err()
            })
            .await,
            "the listener closes"
        );
        let deadline = Instant::now() + LIMIT;
        loop {
            let clients = sluice.clients().await;
            let applications: Vec<_> = clients.iter().map(|c| c["application"].clone()).collect();
            if applications == ["working"] {
                assert_eq!(clients[0]["in_transaction"], true);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the idle client is still there: {clients:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            idle.simple_query("SELECT 1").await.is_err(),
            "the idle client was disconnected"
        );

        assert_eq!(
            scalar_i32(&mut working, "SELECT COUNT(*) FROM dbo.t").await,
            Some(1)
        );
        run(&mut working, "COMMIT").await;
        assert_eq!(sluice.exit_code().await, Some(0), "{}", sluice.log());
        assert!(
            working.simple_query("SELECT 1").await.is_err(),
            "the client was closed after its transaction"
        );
        assert!(sluice.log().contains("drained"), "{}", sluice.log());
    }

    /// A transaction still open when `shutdown_timeout_ms` runs out: its
    /// client gets Sluice's error and is closed; a second signal is not needed.
    #[tokio::test]
    async fn a_transaction_past_the_shutdown_timeout_is_cut_off() {
        let (_primary, mut sluice, mut working) =
            process_with_open_transaction("timeout", 300).await;
        sluice.signal(libc::SIGTERM);
        assert_eq!(sluice.exit_code().await, Some(0), "{}", sluice.log());
        let error = working
            .simple_query("COMMIT")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("Sluice is shutting down"), "{error}");
        assert!(
            sluice.log().contains("closing the remaining sessions"),
            "{}",
            sluice.log()
        );
    }

    /// A second signal during the drain exits at once, without waiting for
    /// the open transaction.
    #[tokio::test]
    async fn a_second_signal_exits_at_once() {
        let (_primary, mut sluice, _working) = process_with_open_transaction("twice", 60_000).await;
        sluice.signal(libc::SIGTERM);
        assert!(wait_not_ready(sluice.admin).await, "/readyz turns false");
        sluice.signal(libc::SIGINT);
        assert_eq!(sluice.exit_code().await, Some(130), "{}", sluice.log());
    }

    /// `listen.workers` sets the runtime's worker threads (tokio names
    /// them `tokio-rt-worker`, its blocking threads otherwise; none has
    /// started yet, no password having been checked).
    #[tokio::test]
    async fn the_runtime_runs_as_many_workers_as_listen_workers_says() {
        let primary = Backend::start().await;
        let sluice = SluiceProcess::start(primary.addr, "workers", "workers = 3\n").await;
        let tasks = format!("/proc/{}/task", sluice.child.id());
        let workers = std::fs::read_dir(&tasks)
            .expect("the process's threads")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "tokio-rt-worker")
            .count();
        assert_eq!(workers, 3, "{}", sluice.log());
    }

    /// SIGHUP reloads proxy.toml: `/status` shows the new file's hash. A
    /// broken file is refused (logged, counted) and Sluice keeps serving
    /// with the configuration it had.
    #[tokio::test]
    async fn sighup_reloads_and_a_broken_file_changes_nothing() {
        let primary = Backend::start().await;
        let sluice = SluiceProcess::start(primary.addr, "sighup", "").await;
        let hash = |status: Value| status["config"]["hash"].as_str().unwrap_or("").to_string();
        let before = hash(get(sluice.admin, "/status", None).await.json());
        let text = std::fs::read_to_string(&sluice.config).expect("proxy.toml");

        std::fs::write(
            &sluice.config,
            format!("{text}[routing]\nread_your_writes_ms = 0\n"),
        )
        .expect("write");
        sluice.signal(libc::SIGHUP);
        let admin = sluice.admin;
        let changed = eventually(LIMIT, || {
            let before = before.clone();
            async move { hash(get(admin, "/status", None).await.json()) != before }
        })
        .await;
        assert!(changed, "the reload did not happen:\n{}", sluice.log());
        let after = hash(get(sluice.admin, "/status", None).await.json());

        std::fs::write(
            &sluice.config,
            format!("{text}[routing]\nno_such_key = 1\n"),
        )
        .expect("write");
        sluice.signal(libc::SIGHUP);
        let refused = eventually(LIMIT, || async { sluice.log().contains("reload refused") }).await;
        assert!(refused, "{}", sluice.log());
        assert!(sluice.log().contains("no_such_key"), "{}", sluice.log());
        assert_eq!(hash(get(sluice.admin, "/status", None).await.json()), after);
        let mut client = connect(sluice.listen).await;
        assert_eq!(scalar_i32(&mut client, "SELECT 1").await, Some(1));
    }
}

/// `/metrics` of the `sluice` process itself, where (unlike in a test
/// that installs its own recorder first) the admin API starts after the
/// proxy and its backends were built.
#[cfg(unix)]
mod process_metrics {
    use super::drain::SluiceProcess;
    use super::*;

    /// The value of the first sample whose line starts with `prefix`.
    fn sample(metrics: &str, prefix: &str) -> Option<f64> {
        metrics
            .lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    #[tokio::test]
    async fn metrics_registered_at_start_are_recorded() {
        let primary = Backend::start().await;
        let sluice = SluiceProcess::start_with(primary.addr, "metrics", "", "", None).await;
        let mut client = connect(sluice.listen).await;
        for _ in 0..3 {
            assert_eq!(scalar_i32(&mut client, "SELECT 1").await, Some(1));
        }
        // A request's duration is recorded once its response has gone out:
        // the last one may still be on its way.
        let admin = sluice.admin;
        let durations_of =
            |metrics: &str| sample(metrics, "sluice_request_duration_seconds_count{");
        let all_timed = eventually(LIMIT, || async move {
            durations_of(&get(admin, "/metrics", None).await.body).is_some_and(|n| n >= 3.0)
        })
        .await;
        let metrics = get(sluice.admin, "/metrics", None).await.body;
        assert!(
            all_timed,
            "request durations: {:?}\n{metrics}",
            durations_of(&metrics)
        );
        let reads = sample(&metrics, "sluice_classifications_total{class=\"read\"}");
        assert!(
            reads.is_some_and(|n| n >= 3.0),
            "reads: {reads:?}\n{metrics}"
        );
    }
}

/// `[log]`, on the `sluice` process itself.
#[cfg(unix)]
mod logs {
    use super::drain::SluiceProcess;
    use super::*;

    /// The complete lines of a log, each parsed as JSON.
    fn json_lines(log: &str) -> Vec<Value> {
        log.split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// `format = "json"` with the session at debug: every line is a JSON
    /// object, and each routing decision carries the client's SPID, the
    /// target, the reason and the statement's fingerprint, with none of
    /// its literals.
    #[tokio::test]
    async fn json_lines_show_each_routing_decision_without_literals() {
        let primary = Backend::start().await;
        let tables = "[log]\nformat = \"json\"\nlevel = \"info,sluice::frontend::session=debug\"\n";
        let sluice = SluiceProcess::start_with(primary.addr, "json-log", "", tables, None).await;
        let mut client = connect(sluice.listen).await;
        let sql = "SELECT 42 AS v WHERE N'hunter2' = 'hunter2' -- 0x5EC2E7";
        assert_eq!(scalar_i32(&mut client, sql).await, Some(42));

        let routed_line = |log: &str| {
            json_lines(log)
                .into_iter()
                .find(|line| line["fields"]["message"] == "routed")
        };
        let logged = eventually(LIMIT, || {
            let log = sluice.log();
            async move { routed_line(&log).is_some() }
        })
        .await;
        let log = sluice.log();
        assert!(logged, "no routing decision logged:\n{log}");
        let routed = routed_line(&log).expect("a routed line");
        assert_eq!(routed["level"], "DEBUG", "{routed}");
        let fields = &routed["fields"];
        assert_eq!(
            fields["fingerprint"], "SELECT ? AS v WHERE ? = ?",
            "{routed}"
        );
        assert_eq!(fields["target"], "Primary", "{routed}");
        assert!(
            fields["spid"].as_u64().is_some_and(|spid| spid > 0),
            "{routed}"
        );
        assert!(
            fields["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{routed}"
        );
        for secret in ["hunter2", "5EC2E7"] {
            assert!(!log.contains(secret), "{secret} logged:\n{log}");
        }
        assert!(
            json_lines(&log)
                .iter()
                .any(|line| line["fields"]["message"] == "sluice listening"
                    && line["level"] == "INFO"),
            "{log}"
        );
    }

    /// `RUST_LOG`, when set, decides over `log.level`.
    #[tokio::test]
    async fn rust_log_overrides_the_configured_level() {
        let primary = Backend::start().await;
        let tables = "[log]\nlevel = \"off\"\n";
        let sluice =
            SluiceProcess::start_with(primary.addr, "rust-log", "", tables, Some("info")).await;
        let logged = eventually(LIMIT, || {
            let log = sluice.log();
            async move { log.contains("sluice listening") }
        })
        .await;
        let log = sluice.log();
        assert!(logged, "{log}");
        assert!(!log.starts_with('{'), "text is the default format: {log}");
    }
}
