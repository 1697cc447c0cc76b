//! Shared test harness: embedded iridium backends, a Sluice in front of
//! them, and tiberius clients. Everything binds 127.0.0.1 port 0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;

use iridium_core::{Database, SessionManager, StatementExecutor};
use iridium_server::{ServerConfig, TdsServer};
use sluice::config::Config;
use tiberius::{AuthMethod, Client, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub const USER: &str = "app";
pub const PASSWORD: &str = "app-password";

pub type TestClient = Client<Compat<TcpStream>>;

/// One PHC hash for the whole test binary: argon2 is slow on purpose.
pub fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| sluice::frontend::hash_password(PASSWORD).expect("hash"))
}

/// Most sessions an embedded backend's listener accepts at once.
pub const MAX_SESSIONS: usize = 16_384;

/// An embedded iridium engine with its TDS listener on an ephemeral port.
pub struct Backend {
    pub engine: Database,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start() -> Backend {
        Backend::start_on(Database::new()).await
    }

    /// A second listener over an existing engine (instant "replication").
    pub async fn start_on(engine: Database) -> Backend {
        // iridium refuses logins past 50 sessions per listener by default;
        // the scale test and bench open more than that.
        let config = ServerConfig::default()
            .port(0)
            .disable_tls()
            .pool_max_size(MAX_SESSIONS);
        let mut server = TdsServer::new_with_database(engine.clone(), config);
        let addr = server.bind().await.expect("bind iridium");
        let task = tokio::spawn(async move {
            let _ = server.run().await;
        });
        Backend { engine, addr, task }
    }

    /// Runs T-SQL directly on the engine, bypassing TDS (for seeding).
    pub fn exec(&self, sql: &str) {
        let session = self.engine.create_session();
        self.engine
            .execute_session_batch_sql(session, sql)
            .unwrap_or_else(|e| panic!("seeding failed: {e}\n{sql}"));
        let _ = self.engine.close_session(session);
    }

    /// Stops accepting new connections (existing ones keep running).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// The pool mode the tests run Sluice in: `SLUICE_TEST_POOL_MODE`
/// (`transaction`, the default, or `session`). CI runs the suite in both.
pub fn pool_mode() -> &'static str {
    match std::env::var("SLUICE_TEST_POOL_MODE").as_deref() {
        Ok("session") => "session",
        _ => "transaction",
    }
}

/// proxy.toml text for a Sluice listening on port 0 in front of `primary`,
/// in [`pool_mode`].
pub fn config_text(primary: SocketAddr, replicas: &[SocketAddr]) -> String {
    let mut text = format!(
        r#"
[listen]
address = "127.0.0.1:0"
login_timeout_ms = 5000
[[users]]
name = "{USER}"
password_hash = "{}"
[primary]
address = "{primary}"
user = "sa"
password = "unused-by-iridium"
# iridium never answers Transaction Manager requests.
transaction_requests = "emulate"
[pool]
mode = "{}"
max_size = 8
connect_timeout_ms = 2000
"#,
        password_hash(),
        pool_mode()
    );
    for (i, r) in replicas.iter().enumerate() {
        text.push_str(&format!(
            "[[replicas]]\nname = \"replica-{}\"\naddress = \"{r}\"\nuser = \"sa\"\npassword = \"x\"\ntransaction_requests = \"emulate\"\n",
            i + 1
        ));
    }
    text
}

pub fn parse_config(text: &str) -> Config {
    Config::parse(text, std::path::Path::new("<test>")).expect("test config is valid")
}

/// Starts Sluice with `config` on an ephemeral port and returns its address.
pub async fn start_sluice(config: Config) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sluice");
    let (addr, _task) = sluice::server::spawn(config, listener)
        .await
        .expect("start sluice");
    addr
}

/// Starts Sluice with `config` and keeps the proxy, for tests that look at
/// its state (admission counters, the user directory, backend health).
pub async fn start_proxy(config: Config) -> (std::sync::Arc<sluice::server::Proxy>, SocketAddr) {
    let proxy = sluice::server::Proxy::new(config).expect("proxy");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sluice");
    let addr = listener.local_addr().expect("sluice address");
    tokio::spawn(proxy.clone().serve(listener));
    (proxy, addr)
}

/// A port nothing listens on now, for a Sluice process's addresses.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// A primary, and Sluice in front of it with default settings.
pub async fn primary_and_sluice() -> (Backend, SocketAddr) {
    let primary = Backend::start().await;
    let addr = start_sluice(parse_config(&config_text(primary.addr, &[]))).await;
    (primary, addr)
}

pub fn tiberius_config(addr: SocketAddr, user: &str, password: &str) -> tiberius::Config {
    let mut config = tiberius::Config::new();
    config.host("127.0.0.1");
    config.port(addr.port());
    config.authentication(AuthMethod::sql_server(user, password));
    config.encryption(EncryptionLevel::NotSupported);
    config.trust_cert();
    config
}

pub async fn connect_with(config: tiberius::Config) -> tiberius::Result<TestClient> {
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

/// Logs in to `sluice` as `user` from the local address `from` (any
/// 127.x.y.z reaches 127.0.0.1 on Linux), so a test can be several hosts.
pub async fn connect_from(
    from: std::net::IpAddr,
    sluice: SocketAddr,
    user: &str,
    password: &str,
) -> tiberius::Result<TestClient> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(sluice).await?;
    tcp.set_nodelay(true)?;
    Client::connect(tiberius_config(sluice, user, password), tcp.compat_write()).await
}

pub async fn connect(addr: SocketAddr) -> TestClient {
    connect_with(tiberius_config(addr, USER, PASSWORD))
        .await
        .expect("tiberius connects through sluice")
}

/// The single integer a query returns, whatever its integer type (iridium
/// types COUNT(*) as bigint).
pub async fn scalar_i32(client: &mut TestClient, sql: &str) -> Option<i32> {
    let row = client
        .simple_query(sql)
        .await
        .expect("query runs")
        .into_row()
        .await
        .expect("row arrives")?;
    let value = row.cells().next().map(|(_, v)| v.clone())?;
    match value {
        tiberius::ColumnData::U8(v) => v.map(i32::from),
        tiberius::ColumnData::I16(v) => v.map(i32::from),
        tiberius::ColumnData::I32(v) => v,
        tiberius::ColumnData::I64(v) => v.map(|n| i32::try_from(n).expect("fits in i32")),
        other => panic!("not an integer: {other:?}"),
    }
}
/// A primary and a replica whose `dbo.whereami` says which one answered
/// (and an empty `dbo.items` with an IDENTITY column), behind a Sluice with
/// `routing` appended to its `[routing]` section.
pub struct Pair {
    pub primary: Backend,
    pub replica: Backend,
    pub sluice: std::net::SocketAddr,
}

pub async fn pair(routing: &str) -> Pair {
    let primary = Backend::start().await;
    let replica = Backend::start().await;
    for (backend, name) in [(&primary, "primary"), (&replica, "replica")] {
        backend.exec(&format!(
            "CREATE TABLE dbo.whereami (v NVARCHAR(20)); INSERT INTO dbo.whereami VALUES (N'{name}');
             CREATE TABLE dbo.items (id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(50));"
        ));
    }
    let text = config_text(primary.addr, &[replica.addr]) + "[routing]\n" + routing;
    let sluice = start_sluice(parse_config(&text)).await;
    Pair {
        primary,
        replica,
        sluice,
    }
}

/// Runs `sql` and returns the `v` column of its first row.
pub async fn whereami(client: &mut TestClient, sql: &str) -> String {
    let row = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_row()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"));
    row.get::<&str, _>("v")
        .unwrap_or_else(|| panic!("{sql}: no v"))
        .to_string()
}

/// Runs `sql` and reads all its results; panics on an error.
pub async fn run(client: &mut TestClient, sql: &str) {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub mod process;
pub mod raw;
pub mod redis;
pub mod rpc;
pub mod scale;

/// A self-signed certificate for 127.0.0.1/localhost, written to a fresh
/// directory; returns the certificate and key paths.
pub fn self_signed_certificate() -> (std::path::PathBuf, std::path::PathBuf) {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("cert");
    let dir = certificate_dir();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).expect("write cert");
    std::fs::write(&key, generated.key_pair.serialize_pem()).expect("write key");
    (cert, key)
}

/// A fresh directory for generated certificates.
fn certificate_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-cert-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn certificate_authority(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert, key)
}

/// A server certificate for 127.0.0.1/localhost signed by a private CA,
/// and a CA bundle (PEM, two CAs: an unrelated one, then the issuer) that
/// verifies it, as operators get them from their PKI.
pub struct CaSignedCertificate {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub ca_bundle: std::path::PathBuf,
}

pub fn ca_signed_certificate() -> CaSignedCertificate {
    let (other_ca, _) = certificate_authority("Sluice tests unrelated CA");
    let (ca, ca_key) = certificate_authority("Sluice tests CA");
    let params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("server params");
    let key = rcgen::KeyPair::generate().expect("server key");
    let server = params.signed_by(&key, &ca, &ca_key).expect("sign");
    let dir = certificate_dir();
    let out = CaSignedCertificate {
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        ca_bundle: dir.join("ca-bundle.pem"),
    };
    std::fs::write(&out.cert, server.pem()).expect("write cert");
    std::fs::write(&out.key, key.serialize_pem()).expect("write key");
    std::fs::write(&out.ca_bundle, other_ca.pem() + &ca.pem()).expect("write bundle");
    out
}
pub mod fake;
pub mod link;
