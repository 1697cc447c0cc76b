//! A real `redis-server` child process for the tests: on a free loopback
//! port, nothing saved to disk, optionally with a password and a TLS port.
//! Killed (SIGKILL) when dropped. `.ci/install-interop.sh` installs it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a starting server may take before the test fails.
const START_LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Default)]
pub struct RedisServerOptions {
    /// `requirepass`: clients must AUTH with it.
    pub password: Option<String>,
    /// Also listen with TLS (see [`RedisServer::tls_url`]), with a
    /// certificate for 127.0.0.1/localhost from a private CA.
    pub tls: bool,
}

/// The TLS port's files; `ca_bundle` verifies the server's certificate.
#[derive(Debug, Clone)]
pub struct RedisTls {
    pub port: u16,
    pub ca_bundle: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub password: Option<String>,
    pub tls: Option<RedisTls>,
    dir: PathBuf,
}

impl RedisServer {
    /// A server without password or TLS.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(RedisServerOptions::default()).await
    }

    /// A server, or why there is none: for benchmarks, which skip what
    /// needs Redis on a machine without it rather than fail.
    pub async fn try_start() -> Result<RedisServer, String> {
        let installed = std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join("redis-server").is_file())
        });
        if !installed {
            return Err("redis-server is not on PATH".into());
        }
        Ok(RedisServer::start().await)
    }

    pub async fn start_with(options: RedisServerOptions) -> RedisServer {
        let tls = options.tls.then(|| {
            let files = super::ca_signed_certificate();
            RedisTls {
                port: super::free_port(),
                ca_bundle: files.ca_bundle,
                cert: files.cert,
                key: files.key,
            }
        });
        let mut server = RedisServer {
            child: None,
            port: super::free_port(),
            password: options.password,
            tls,
            dir: super::temp_dir("sluice-redis"),
        };
        server.spawn().await;
        server
    }

    /// `redis://127.0.0.1:<port>`, without the password.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:<tls port>`; panics if started without TLS.
    pub fn tls_url(&self) -> String {
        let tls = self.tls.as_ref().expect("server started with tls: true");
        format!("rediss://127.0.0.1:{}", tls.port)
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if running, then starts it again on the same port(s),
    /// empty (nothing is persisted).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let log = self.dir.join("redis.log");
        let child = Command::new(super::tools::on_path("redis-server"))
            .args(self.arguments(&log))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        self.wait_ready(&log).await;
    }

    fn arguments(&self, log: &Path) -> Vec<String> {
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        .map(String::from)
        .to_vec();
        args.extend(["--port".into(), self.port.to_string()]);
        args.extend(["--dir".into(), self.dir.display().to_string()]);
        args.extend(["--logfile".into(), log.display().to_string()]);
        if let Some(password) = &self.password {
            args.extend(["--requirepass".into(), password.clone()]);
        }
        if let Some(tls) = &self.tls {
            args.extend(["--tls-port".into(), tls.port.to_string()]);
            args.extend(["--tls-cert-file".into(), tls.cert.display().to_string()]);
            args.extend(["--tls-key-file".into(), tls.key.display().to_string()]);
            args.extend([
                "--tls-ca-cert-file".into(),
                tls.ca_bundle.display().to_string(),
            ]);
            args.extend(["--tls-auth-clients".into(), "no".into()]);
        }
        args
    }

    /// Polls PING on the plain port until PONG; panics with the server's
    /// log if it exits or does not answer within [`START_LIMIT`].
    async fn wait_ready(&mut self, log: &Path) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let child = self.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().expect("redis-server status") {
                panic!("redis-server exited ({status}):\n{}", read_log(log));
            }
            if self.pings().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server is not answering PING on port {} after {START_LIMIT:?}:\n{}",
                self.port,
                read_log(log)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One PING (after AUTH if there is a password) in raw RESP, so that
    /// readiness does not depend on the client under test.
    async fn pings(&self) -> bool {
        let attempt = async {
            let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            let mut request = Vec::new();
            if let Some(password) = &self.password {
                request.extend_from_slice(
                    format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len()).as_bytes(),
                );
            }
            request.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            tcp.write_all(&request).await?;
            let mut reply = Vec::new();
            while !reply.ends_with(b"+PONG\r\n") {
                let mut chunk = [0u8; 256];
                let n = tcp.read(&mut chunk).await?;
                reply.extend_from_slice(&chunk[..n]);
                // Closed, or an error reply (loading, or the password refused).
                if n == 0 || reply.starts_with(b"-") {
                    return Ok::<bool, std::io::Error>(false);
                }
            }
            Ok(true)
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), attempt).await,
            Ok(Ok(true))
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}
