//! `cargo run --example demo`: Sluice in front of two embedded iridium
//! listeners (a primary and a replica over one shared in-memory engine, so
//! replication looks instant), ready for any SQL Server client.
//!
//! Options:
//! - `--port N`: Sluice's port (default 14330); the admin API listens on
//!   the next port.
//! - `--host ADDR`: the address every listener binds (default `127.0.0.1`;
//!   `0.0.0.0` in a container).
//! - `--backends-only`: no Sluice, only the two iridium listeners, the
//!   primary on `--port` and the replica on the next port, for a Sluice
//!   started with its own `proxy.toml` (`docker-compose.demo.yml` runs
//!   `--backends-only --host 0.0.0.0 --port 14331`, for
//!   `deploy/demo/proxy.toml`).
//!
//! Each request's target and routing reason is logged as it is routed.

use iridium_core::{Database, SessionManager, StatementExecutor};
use iridium_server::{ServerConfig, TdsServer};
use sluice::config::Config;

const DEMO_USER: &str = "app";
const DEMO_PASSWORD: &str = "app";

struct Options {
    host: String,
    port: u16,
    backends_only: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // Each request's target and routing reason, as it is routed.
                .unwrap_or_else(|_| "info,tiberius=error,sluice::frontend::session=debug".into()),
        )
        .init();
    let options = options()?;
    let engine = Database::new();
    seed(&engine)?;
    if options.backends_only {
        return backends_only(engine, &options).await;
    }
    let port = options.port;
    let primary = start_listener(engine.clone(), &options.host, 0).await?;
    let replica = start_listener(engine, &options.host, 0).await?;
    let config = demo_config(&options, primary, replica)?;
    let proxy = sluice::server::Proxy::new(config)?;
    let listener = proxy.bind().await?;
    let admin = proxy.start_admin().await?;
    let host = &options.host;
    println!("Sluice demo: listening on {host}:{port}");
    if let Some(admin) = admin {
        println!("  admin API on http://{admin} (/status, /clients, /metrics)");
    }
    println!("  primary (iridium) on {primary}, replica (iridium) on {replica}");
    println!("  user {DEMO_USER:?}, password {DEMO_PASSWORD:?}, table dbo.demo_items");
    println!();
    println!("Connect with FreeTDS:");
    println!("  tsql -H 127.0.0.1 -p {port} -U {DEMO_USER} -P {DEMO_PASSWORD}");
    println!("  1> SELECT * FROM dbo.demo_items");
    println!("  2> go");
    println!("or any driver with Server=127.0.0.1,{port};User Id={DEMO_USER};Password={DEMO_PASSWORD};Encrypt=no");
    println!("Ctrl-C stops the demo.");
    tokio::select! {
        _ = proxy.serve(listener) => {}
        _ = stop_signal() => println!("bye"),
    }
    Ok(())
}

/// The two iridium listeners alone, on `--port` and the next port.
async fn backends_only(
    engine: Database,
    options: &Options,
) -> Result<(), Box<dyn std::error::Error>> {
    let replica_port = options
        .port
        .checked_add(1)
        .ok_or("--port leaves no room for the replica's port")?;
    let primary = start_listener(engine.clone(), &options.host, options.port).await?;
    let replica = start_listener(engine, &options.host, replica_port).await?;
    println!("Sluice demo backends (iridium, one shared in-memory engine, table dbo.demo_items):");
    println!("  primary on {primary}, replica on {replica}");
    println!(
        "  any login is accepted; set transaction_requests = \"emulate\" for both in proxy.toml"
    );
    stop_signal().await;
    println!("bye");
    Ok(())
}

/// Ctrl-C, or SIGTERM (what `docker stop` sends to the container's PID 1).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn options() -> Result<Options, Box<dyn std::error::Error>> {
    let mut options = Options {
        host: "127.0.0.1".into(),
        port: 14330,
        backends_only: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => options.port = args.next().ok_or("--port needs a number")?.parse()?,
            "--host" => options.host = args.next().ok_or("--host needs an address")?,
            "--backends-only" => options.backends_only = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; options: --port N, --host ADDR, --backends-only"
                )
                .into())
            }
        }
    }
    Ok(options)
}

fn seed(engine: &Database) -> Result<(), Box<dyn std::error::Error>> {
    let session = engine.create_session();
    engine.execute_session_batch_sql(
        session,
        "CREATE TABLE dbo.demo_items (id INT PRIMARY KEY, name NVARCHAR(50), price DECIMAL(10,2));
         INSERT INTO dbo.demo_items VALUES (1, N'sluice gate', 120.50), (2, N'weir', 80.00), (3, N'lock', 310.25);",
    )?;
    let _ = engine.close_session(session);
    Ok(())
}

async fn start_listener(
    engine: Database,
    host: &str,
    port: u16,
) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    let mut server = TdsServer::new_with_database(
        engine,
        ServerConfig::default().host(host).port(port).disable_tls(),
    );
    let addr = server.bind().await?;
    tokio::spawn(async move {
        if let Err(e) = server.run().await {
            eprintln!("iridium listener stopped: {e}");
        }
    });
    Ok(addr)
}

fn demo_config(
    options: &Options,
    primary: std::net::SocketAddr,
    replica: std::net::SocketAddr,
) -> Result<Config, Box<dyn std::error::Error>> {
    let hash = sluice::frontend::hash_password(DEMO_PASSWORD).map_err(|e| e.to_string())?;
    let (host, port) = (&options.host, options.port);
    // A listener bound to 0.0.0.0 is reached through loopback by Sluice.
    let primary = loopback_if_unspecified(primary);
    let replica = loopback_if_unspecified(replica);
    let text = format!(
        r#"
[listen]
address = "{host}:{port}"
[[users]]
name = "{DEMO_USER}"
password_hash = "{hash}"
[primary]
address = "{primary}"
user = "sa"
password = "demo"
transaction_requests = "emulate"
[[replicas]]
name = "replica-1"
address = "{replica}"
user = "sa"
password = "demo"
transaction_requests = "emulate"
[admin]
address = "{host}:{admin_port}"
"#,
        admin_port = port.wrapping_add(1)
    );
    Ok(Config::parse(&text, std::path::Path::new("<demo>"))?)
}

fn loopback_if_unspecified(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        let loopback: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        std::net::SocketAddr::new(loopback, addr.port())
    } else {
        addr
    }
}
