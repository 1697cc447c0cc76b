//! Hot reload: proxy.toml re-read while clients run (`Proxy::reload`, the
//! same path SIGHUP and `POST /reload` take). Rules, replicas and limits
//! change at the next request; a broken file changes nothing.
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sluice::config::Config;
use sluice::server::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(15);
const READ: &str = "SELECT v FROM dbo.whereami";
const TO_PRIMARY: &str =
    "[[routing.rules]]\nname = \"whereami-on-primary\"\nmatch_sql = \"whereami\"\ntarget = \"primary\"\n";

/// A backend whose `dbo.whereami` holds its own name.
async fn backend(name: &str) -> Backend {
    let backend = Backend::start().await;
    backend.exec(&format!(
        "CREATE TABLE dbo.whereami (v NVARCHAR(20)); INSERT INTO dbo.whereami VALUES (N'{name}');"
    ));
    backend
}

/// proxy.toml for `primary` and `replicas`, with `extra` appended (after
/// `[routing]`), written to a fresh file per test.
struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("sluice-reload-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        ConfigFile {
            path: dir.join("proxy.toml"),
        }
    }

    fn write(&self, primary: SocketAddr, replicas: &[SocketAddr], routing: &str) {
        let text =
            config_text(primary, replicas) + "[routing]\nread_your_writes_ms = 0\n" + routing;
        self.write_text(&text);
    }

    fn write_text(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write proxy.toml");
    }

    fn load(&self) -> Config {
        Config::load(&self.path).expect("valid proxy.toml")
    }
}

async fn start(file: &ConfigFile) -> (Arc<Proxy>, SocketAddr) {
    start_proxy(file.load()).await
}

/// Where the next read goes, on a session that stays logged in.
async fn read_from(client: &mut TestClient) -> String {
    whereami(client, READ).await
}

/// Clients reading in a loop until stopped; counts answers by backend and
/// every failed request.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    async fn start(sluice: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let mut client = connect(sluice).await;
            let (stop, failures) = (stop.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.simple_query(READ).await {
                        Ok(stream) => match stream.into_row().await {
                            Ok(Some(row)) => {
                                seen.push(row.get::<&str, _>("v").unwrap_or("?").to_string())
                            }
                            _ => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        },
                        Err(_) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                seen
            }));
        }
        Load {
            stop,
            failures,
            tasks,
        }
    }

    /// Stops the clients; every answer each got, in order.
    async fn finish(self) -> (usize, Vec<Vec<String>>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut answers = Vec::new();
        for task in self.tasks {
            answers.push(task.await.expect("client task"));
        }
        (self.failures.load(Ordering::Relaxed), answers)
    }
}

/// A rule added and removed again, twenty times, while four clients read
/// in a loop: no request fails, and a logged-in session follows each
/// reload at its next request.
#[tokio::test]
async fn reloads_under_load_fail_no_request_and_apply_at_the_next_one() {
    let (primary, replica) = (backend("primary").await, backend("replica").await);
    let file = ConfigFile::new("load");
    file.write(primary.addr, &[replica.addr], "");
    let (proxy, sluice) = start(&file).await;
    let mut watcher = connect(sluice).await;
    assert_eq!(read_from(&mut watcher).await, "replica");

    let load = Load::start(sluice, 4).await;
    for round in 0..20 {
        let (rules, expected) = if round % 2 == 0 {
            (TO_PRIMARY, "primary")
        } else {
            ("", "replica")
        };
        file.write(primary.addr, &[replica.addr], rules);
        proxy.reload().await.expect("reload");
        assert_eq!(read_from(&mut watcher).await, expected, "round {round}");
    }
    let (failures, answers) = load.finish().await;
    assert_eq!(failures, 0, "requests failed during reloads");
    for seen in &answers {
        assert!(!seen.is_empty(), "a client made no progress");
    }
}

/// A file that does not load is refused with the message `sluice check`
/// prints for it, by `Proxy::reload` and by `POST /reload` (400); the
/// configuration in force does not change.
#[tokio::test]
async fn a_broken_file_changes_nothing_and_says_what_sluice_check_says() {
    let (primary, replica) = (backend("primary").await, backend("replica").await);
    let file = ConfigFile::new("broken");
    file.write(primary.addr, &[replica.addr], "");
    let text = std::fs::read_to_string(&file.path).unwrap();
    let admin_port = free_port();
    file.write_text(&format!(
        "{text}[admin]\naddress = \"127.0.0.1:{admin_port}\"\n"
    ));
    let (proxy, sluice) = start(&file).await;
    let admin = proxy.start_admin().await.expect("admin").expect("[admin]");
    let hash = proxy.config().origin.hash.clone();
    let mut client = connect(sluice).await;
    assert_eq!(read_from(&mut client).await, "replica");

    // A rule sending reads to the primary, in a file with a bad key.
    file.write_text(&format!("{text}{TO_PRIMARY}[pool]\nmax_sise = 4\n"));
    let refusal = proxy.reload().await.expect_err("a broken file is refused");
    let check = sluice_check(&file.path);
    assert_eq!(refusal.to_string().trim(), check.trim());

    let reply = post_reload(admin).await;
    assert_eq!(reply.0, 400, "{}", reply.1);
    assert_eq!(reply.1.trim(), check.trim());

    assert_eq!(
        proxy.config().origin.hash,
        hash,
        "the configuration changed"
    );
    assert_eq!(read_from(&mut client).await, "replica");

    // Fixed, the same file goes in through the admin API.
    file.write_text(&format!(
        "{text}{TO_PRIMARY}[admin]\naddress = \"127.0.0.1:{admin_port}\"\n"
    ));
    let reply = post_reload(admin).await;
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_ne!(proxy.config().origin.hash, hash);
    assert_eq!(read_from(&mut client).await, "primary");
}

/// A replica replaced by another and then removed: reads follow at the
/// next request, on sessions logged in before (in session mode, one that
/// holds a connection to the removed replica gives it back).
#[tokio::test]
async fn replicas_added_and_removed_take_reads_at_the_next_request() {
    let primary = backend("primary").await;
    let (first, second) = (backend("first").await, backend("second").await);
    let file = ConfigFile::new("replicas");
    file.write(primary.addr, &[first.addr], "");
    let (proxy, sluice) = start(&file).await;
    let mut client = connect(sluice).await;
    assert_eq!(read_from(&mut client).await, "first");

    file.write(primary.addr, &[second.addr], "");
    let reloaded = proxy.reload().await.expect("reload");
    assert_eq!(reloaded.replicas, ["replica-1"]);
    assert_eq!(read_from(&mut client).await, "second");
    assert_eq!(read_from(&mut connect(sluice).await).await, "second");

    file.write(primary.addr, &[], "");
    proxy.reload().await.expect("reload");
    assert_eq!(read_from(&mut client).await, "primary");
    assert!(proxy.cluster().replicas().is_empty());

    // Both again, then re-weighted in place: a replica of weight 0 takes
    // no reads (ties go to the first listed).
    file.write(primary.addr, &[first.addr, second.addr], "");
    proxy.reload().await.expect("reload");
    assert_eq!(read_from(&mut client).await, "first");
    let weighted = |weight_of_first: u32| {
        let text = std::fs::read_to_string(&file.path).unwrap();
        let replica_1 = "name = \"replica-1\"\n";
        text.replace(
            replica_1,
            &format!("{replica_1}weight = {weight_of_first}\n"),
        )
    };
    let text = weighted(0);
    file.write_text(&text);
    let kept = proxy.reload().await.expect("reload");
    assert_eq!(kept.replicas, ["replica-1", "replica-2"]);
    assert_eq!(read_from(&mut client).await, "second");
    assert_eq!(read_from(&mut connect(sluice).await).await, "second");
}

/// A replica kept across a reload keeps its pool: the connection the
/// session used before is the one it uses after (same server SPID), and a
/// re-weighted replica keeps serving.
#[tokio::test]
async fn an_unchanged_replica_keeps_its_pool_across_a_reload() {
    let (primary, replica) = (backend("primary").await, backend("replica").await);
    let file = ConfigFile::new("kept");
    file.write(primary.addr, &[replica.addr], "");
    let (proxy, sluice) = start(&file).await;
    let before = Arc::as_ptr(&proxy.cluster().replicas()[0]);
    let mut client = connect(sluice).await;
    let spid = scalar_i32(&mut client, "SELECT @@SPID").await;

    let with_weight = std::fs::read_to_string(&file.path).unwrap().replace(
        "name = \"replica-1\"\n",
        "name = \"replica-1\"\nweight = 3\n",
    );
    file.write_text(&with_weight);
    proxy.reload().await.expect("reload");
    assert_eq!(
        Arc::as_ptr(&proxy.cluster().replicas()[0]),
        before,
        "the replica was rebuilt"
    );
    assert_eq!(scalar_i32(&mut client, "SELECT @@SPID").await, spid);
    assert_eq!(read_from(&mut client).await, "replica");
}

/// `[pool] max_size` raised by a reload lets a request waiting for a
/// connection have one at once.
#[tokio::test]
async fn a_larger_pool_serves_a_waiting_request() {
    let primary = backend("primary").await;
    let file = ConfigFile::new("pool");
    let one = |max: u32| {
        config_text(primary.addr, &[]).replace(
            "max_size = 8",
            &format!("max_size = {max}\ncheckout_timeout_ms = 10000"),
        ) + "[routing]\nread_your_writes_ms = 0\n"
    };
    file.write_text(&one(1));
    let (proxy, sluice) = start(&file).await;
    // One client holds the only connection inside a transaction.
    let mut holder = connect(sluice).await;
    run(&mut holder, "BEGIN TRANSACTION; SELECT 1").await;
    let waiter = tokio::spawn(async move {
        let mut client = connect(sluice).await;
        whereami(&mut client, READ).await
    });
    let waiting = eventually(LIMIT, || {
        let proxy = proxy.clone();
        async move { proxy.cluster().primary().pools().usage().waiting > 0 }
    })
    .await;
    assert!(waiting, "no request waited for the pool");
    file.write_text(&one(2));
    proxy.reload().await.expect("reload");
    let answer = tokio::time::timeout(LIMIT, waiter).await;
    assert_eq!(
        answer.expect("the waiter was served").expect("task"),
        "primary"
    );
    run(&mut holder, "COMMIT").await;
}

fn sluice_check(path: &Path) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("--config")
        .arg(path)
        .arg("check")
        .output()
        .expect("run sluice check");
    assert!(!output.status.success(), "sluice check accepted the file");
    String::from_utf8(output.stderr).expect("UTF-8")
}

/// `POST /reload`: the status code and body.
async fn post_reload(admin: SocketAddr) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(admin)
        .await
        .expect("admin API");
    tcp.write_all(b"POST /reload HTTP/1.1\r\nHost: sluice\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("send");
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_string())
}

/// The listener's certificate is read again by every reload: a renewed
/// certificate written over the old files is what new clients see after
/// it (clients trusting only the new one fail before, succeed after).
#[tokio::test]
async fn a_reload_picks_up_a_renewed_certificate() {
    let primary = backend("primary").await;
    let (cert, key) = self_signed_certificate();
    let old_cert = cert.with_file_name("old.pem");
    std::fs::copy(&cert, &old_cert).expect("keep the old certificate");
    let file = ConfigFile::new("tls");
    let text = config_text(primary.addr, &[]).replace(
        "login_timeout_ms = 5000\n",
        &format!(
            "login_timeout_ms = 5000\n[listen.tls]\nmode = \"required\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    file.write_text(&text);
    let (proxy, sluice) = start(&file).await;
    let trusting = |ca: &Path| {
        let mut config = tiberius::Config::new();
        config.host("127.0.0.1");
        config.port(sluice.port());
        config.authentication(tiberius::AuthMethod::sql_server(USER, PASSWORD));
        config.encryption(tiberius::EncryptionLevel::Required);
        config.trust_cert_ca(ca.display().to_string());
        config
    };
    assert!(connect_with(trusting(&old_cert)).await.is_ok());

    let (renewed, renewed_key) = self_signed_certificate();
    std::fs::copy(&renewed, &cert).expect("renew the certificate");
    std::fs::copy(&renewed_key, &key).expect("renew the key");
    assert!(
        connect_with(trusting(&renewed)).await.is_err(),
        "the renewed certificate was served before the reload"
    );
    proxy.reload().await.expect("reload");
    assert!(connect_with(trusting(&renewed)).await.is_ok());
    assert!(connect_with(trusting(&old_cert)).await.is_err());
}

/// An unchanged `[cache]` keeps its entries across a reload; a changed one
/// starts empty (its rules may now say otherwise).
#[tokio::test]
async fn a_reload_keeps_an_unchanged_result_cache() {
    let primary = backend("primary").await;
    let file = ConfigFile::new("cache");
    let cache = "[cache]\n[[cache.rules]]\nmatch_sql = \"whereami\"\nttl_ms = 60000\n";
    file.write(primary.addr, &[], cache);
    let (proxy, sluice) = start(&file).await;
    let mut client = connect(sluice).await;
    assert_eq!(read_from(&mut client).await, "primary");
    primary.exec("UPDATE dbo.whereami SET v = N'changed'");
    assert_eq!(read_from(&mut client).await, "primary", "a hit");
    // Another routing key, the same [cache]: still a hit.
    file.write(primary.addr, &[], &format!("{TO_PRIMARY}{cache}"));
    proxy.reload().await.expect("reload");
    assert_eq!(
        read_from(&mut client).await,
        "primary",
        "kept across the reload"
    );
    // A changed [cache] starts empty.
    file.write(primary.addr, &[], &cache.replace("60000", "30000"));
    proxy.reload().await.expect("reload");
    assert_eq!(read_from(&mut client).await, "changed");
}
