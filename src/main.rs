//! The `sluice` command: run the proxy, check a config, hash a password.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::config::Config;
use sluice::server::Proxy;

/// See Cargo.toml: sqlparser's allocations are most of a cold
/// classification, and mimalloc serves them faster than glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod explain;
mod procedures;
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
    /// Read the primary's procedure catalog and print, for every stored
    /// procedure of a database, whether Sluice finds it read-only and why
    /// (routing.detect_read_only_procedures).
    Procedures {
        /// The database (default: the primary's `database`).
        #[arg(long)]
        database: Option<String>,
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
        Some(Command::Procedures { database }) => procedures::run(
            cli.config.as_ref().unwrap_or(&default_path),
            database.as_deref(),
        ),
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
            let cache = config.cache.as_ref().map_or(String::new(), |c| {
                let redis = c
                    .redis_url
                    .as_deref()
                    .map_or("no Redis".to_string(), |url| {
                        format!("Redis {}", sluice::config::redacted_redis_url(url))
                    });
                format!(
                    ", result cache {} MiB in memory, {redis}, {} rule(s)",
                    c.memory_bytes / (1024 * 1024),
                    c.rules.len()
                )
            });
            println!(
                "{}: OK (listen {}, primary {}, {} replica(s), {} user(s){shadow}{cache})",
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
    // Logging follows `[log]`, so the configuration comes first; its
    // errors go to standard error as they are.
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(&config.log);
    raise_open_files();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.listen.worker_threads())
        .enable_all()
        .build();
    let runtime = match runtime {
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
    tracing::info!(address = %proxy.config().listen.address, "sluice listening");
    let serving = proxy.clone().serve(listener);
    tokio::pin!(serving);
    let signal = loop {
        let signal = tokio::select! {
            signal = signals.next() => signal,
            _ = &mut serving => return ExitCode::FAILURE,
        };
        if signal != RELOAD_SIGNAL {
            break signal;
        }
        // Logged by `reload` either way; a refused file changes nothing.
        proxy.reload().await.ok();
    };
    tracing::info!(
        signal,
        timeout_ms = proxy.config().listen.shutdown_timeout_ms,
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
        signal = signals.next_stop() => exit_now(signal),
    }
}

/// The signal that reloads proxy.toml.
const RELOAD_SIGNAL: &str = "SIGHUP";

/// The signals Sluice acts on: SIGTERM and SIGINT (Ctrl-C elsewhere) stop
/// it, SIGHUP reloads the configuration.
struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn new() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
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
            _ = self.hangup.recv() => RELOAD_SIGNAL,
        }
    }

    /// The next signal that stops Sluice (a reload is no use while
    /// draining).
    async fn next_stop(&mut self) -> &'static str {
        loop {
            let signal = self.next().await;
            if signal != RELOAD_SIGNAL {
                return signal;
            }
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

/// `[log]`: text or JSON lines on standard output, at `log.level` unless
/// `RUST_LOG` is set (then it decides, as usual for Rust programs).
fn init_logging(log: &sluice::config::Log) {
    use sluice::config::LogFormat;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) => EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            eprintln!("RUST_LOG={directives:?} ignored ({e}); using log.level");
            EnvFilter::new(log.filter_directives())
        }),
        Err(_) => EnvFilter::new(log.filter_directives()),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log.format {
        LogFormat::Text => builder.init(),
        // One object per line; the event's own fields under "fields" (a
        // routing decision has a field named "target", like the event).
        LogFormat::Json => builder.json().init(),
    }
}
