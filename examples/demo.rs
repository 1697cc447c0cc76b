//! `cargo run --example demo`: Sluice in front of two embedded iridium
//! listeners (a primary and a replica over one shared in-memory engine, so
//! replication looks instant), ready for any SQL Server client.
//!
//! Options: `--port N` for Sluice's port (default 14330); the admin API
//! listens on the next port. Each request's target and routing reason is
//! logged as it is routed.

use iridium_core::{Database, SessionManager, StatementExecutor};
use iridium_server::{ServerConfig, TdsServer};
use sluice::config::Config;

const DEMO_USER: &str = "app";
const DEMO_PASSWORD: &str = "app";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // Each request's target and routing reason, as it is routed.
                .unwrap_or_else(|_| "info,tiberius=error,sluice::frontend::session=debug".into()),
        )
        .init();
    let port = port_argument()?;
    let engine = Database::new();
    seed(&engine)?;
    let primary = start_listener(engine.clone()).await?;
    let replica = start_listener(engine).await?;
    let config = demo_config(port, primary, replica)?;
    let proxy = sluice::server::Proxy::new(config)?;
    let listener = proxy.bind().await?;
    let admin = proxy.start_admin().await?;
    println!("Sluice demo: listening on 127.0.0.1:{port}");
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
        _ = tokio::signal::ctrl_c() => println!("bye"),
    }
    Ok(())
}

fn port_argument() -> Result<u16, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--port") {
        Some(i) => Ok(args.get(i + 1).ok_or("--port needs a number")?.parse()?),
        None => Ok(14330),
    }
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
) -> Result<std::net::SocketAddr, Box<dyn std::error::Error>> {
    let mut server =
        TdsServer::new_with_database(engine, ServerConfig::default().port(0).disable_tls());
    let addr = server.bind().await?;
    tokio::spawn(async move {
        if let Err(e) = server.run().await {
            eprintln!("iridium listener stopped: {e}");
        }
    });
    Ok(addr)
}

fn demo_config(
    port: u16,
    primary: std::net::SocketAddr,
    replica: std::net::SocketAddr,
) -> Result<Config, Box<dyn std::error::Error>> {
    let hash = sluice::frontend::hash_password(DEMO_PASSWORD).map_err(|e| e.to_string())?;
    let text = format!(
        r#"
[listen]
address = "127.0.0.1:{port}"
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
address = "127.0.0.1:{admin_port}"
"#,
        admin_port = port.wrapping_add(1)
    );
    Ok(Config::parse(&text, std::path::Path::new("<demo>"))?)
}
