//! The `sluice` command: run the proxy, check a config, hash a password.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::config::Config;
use sluice::server::Proxy;

mod explain;
mod status;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Read/write-splitting proxy for SQL Server and Azure SQL"
)]
struct Cli {
    /// Path of proxy.toml (default: ./proxy.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and explain what is wrong.
    Check,
    /// Print a password hash (PHC string) for [[users]].password_hash.
    /// Reads the password from the first line of standard input.
    HashPassword,
    /// Show where a statement would go, and why, for a fresh client session.
    /// Without --config, built-in defaults and one replica are assumed.
    Explain {
        /// Print one JSON object (target, replica, class, reason, flags, pins).
        #[arg(long)]
        json: bool,
        /// The SQL text, or `-` to read it from standard input. Text that
        /// starts with `-` (a `-- comment`) is taken as SQL, not as a flag.
        #[arg(allow_hyphen_values = true)]
        sql: String,
    },
    /// Print a running Sluice's backends, pools and clients, from its
    /// admin API (`[admin]` in proxy.toml).
    Status {
        /// Address of the admin API.
        #[arg(long, default_value = "127.0.0.1:9930")]
        admin: String,
        /// Environment variable holding the admin token (admin.token_env).
        #[arg(long)]
        token_env: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_path = PathBuf::from("proxy.toml");
    match cli.command {
        Some(Command::Check) => check(cli.config.as_ref().unwrap_or(&default_path)),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Explain { json, sql }) => explain::run(cli.config.as_deref(), json, &sql),
        Some(Command::Status { admin, token_env }) => status::run(&admin, token_env.as_deref()),
        None => run(cli.config.as_ref().unwrap_or(&default_path)),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            let shadow = match config.routing.mode {
                sluice::config::RoutingMode::Split => String::new(),
                sluice::config::RoutingMode::Shadow => {
                    format!(", shadow mode sampling {}", config.routing.shadow_sample)
                }
            };
            println!(
                "{}: OK (listen {}, primary {}, {} replica(s), {} user(s){shadow})",
                path.display(),
                config.listen.address,
                config.primary.address,
                config.replicas.len(),
                config.users.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err()
        || line.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("hash-password: give the password on standard input, e.g. `echo -n secret | sluice hash-password`");
        return ExitCode::FAILURE;
    }
    match sluice::frontend::hash_password(line.trim_end_matches(['\r', '\n'])) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    init_logging();
    raise_open_files();
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(config));
    // Sessions cut off by the drain may still have tasks (an argon2
    // check, say): do not wait for them.
    runtime.shutdown_background();
    code
}

/// Serves until SIGTERM or SIGINT, then drains (see README, "Operate"); a
/// second signal exits at once.
async fn serve(config: Config) -> ExitCode {
    let mut signals = match StopSignals::new() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("cannot watch for signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proxy = match Proxy::new(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match proxy.bind().await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match proxy.start_admin().await {
        Ok(Some(address)) => tracing::info!(%address, "admin API listening"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(address = %proxy.config.listen.address, "sluice listening");
    let serving = proxy.clone().serve(listener);
    tokio::pin!(serving);
    let signal = tokio::select! {
        signal = signals.next() => signal,
        _ = &mut serving => return ExitCode::FAILURE,
    };
    tracing::info!(
        signal,
        timeout_ms = proxy.config.listen.shutdown_timeout_ms,
        "draining; a second signal exits at once"
    );
    proxy.drain();
    tokio::select! {
        drained = &mut serving => {
            if drained.clean {
                tracing::info!("drained; exiting");
            } else {
                tracing::warn!(remaining = drained.remaining, "drain timed out; exiting");
            }
            ExitCode::SUCCESS
        }
        signal = signals.next() => exit_now(signal),
    }
}

/// The signals that stop Sluice: SIGTERM and SIGINT (Ctrl-C elsewhere).
struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn new() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<StopSignals> {
        Ok(StopSignals {})
    }

    /// The name of the next signal received.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

fn exit_now(signal: &str) -> ExitCode {
    tracing::warn!(
        signal,
        "second signal: exiting without waiting for sessions"
    );
    std::process::exit(130)
}

/// Each client and backend connection is a file descriptor: take all the
/// operator allows (see README, "Many clients").
fn raise_open_files() {
    match sluice::rlimit::raise_open_files() {
        Ok(limits) => tracing::info!(
            soft = limits.now,
            was = limits.before,
            hard = limits.hard,
            "open-file limit"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tiberius=error"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
