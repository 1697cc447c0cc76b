//! `sluice explain`: the routing decision for one statement, as a fresh
//! client session would get it, from the same router the proxy runs.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;

use sluice::catalog::DatabaseProcedures;
use sluice::classify::{Flags, Pin, SessionEffect};
use sluice::config::{Config, RoutingMode};
use sluice::router::{Decision, ReplicaView, Request, SessionView, Target};

pub fn run(config_path: Option<&Path>, json: bool, sql: &str) -> ExitCode {
    let config = match config_path.map(Config::load).transpose() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let sql = match read_sql(sql) {
        Ok(sql) => sql,
        Err(e) => {
            eprintln!("explain: cannot read the SQL from standard input: {e}");
            return ExitCode::FAILURE;
        }
    };
    let procedures = config.as_ref().and_then(detected_procedures);
    let (decision, replica_names) = match decide(config.as_ref(), procedures.as_ref(), &sql) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let replica = match decision.target {
        Target::Replica(i) => replica_names.get(i).cloned(),
        Target::Primary => None,
    };
    if json {
        let mut out = JsonDecision::new(&decision, replica.as_deref());
        out.procedures = procedure_verdicts(&decision, config.as_ref(), procedures.as_ref())
            .into_iter()
            .map(|(name, verdict)| JsonProcedure { name, verdict })
            .collect();
        out.cache = config
            .as_ref()
            .and_then(|c| cache_verdict(c, &decision, &sql));
        match serde_json::to_string(&out) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("explain: cannot write JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print_text(&decision, replica.as_deref());
        for (name, verdict) in procedure_verdicts(&decision, config.as_ref(), procedures.as_ref()) {
            println!("procedure {name}: {verdict}");
        }
        let shadow = config
            .as_ref()
            .is_some_and(|c| c.routing.mode == RoutingMode::Shadow);
        if shadow && replica.is_some() {
            println!("shadow: routing.mode = \"shadow\": runs on the primary; a sampled share also runs on the replica, compared");
        }
        if let Some(cache) = config
            .as_ref()
            .and_then(|c| cache_verdict(c, &decision, &sql))
        {
            println!("cache:  {}", cache.text);
        }
    }
    ExitCode::SUCCESS
}

/// With `routing.detect_read_only_procedures`, the verdicts of the
/// primary's default database, read now; `None` (and a note on standard
/// error) when it cannot be read.
fn detected_procedures(config: &Config) -> Option<DatabaseProcedures> {
    if !config.routing.detect_read_only_procedures {
        return None;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let database = &config.primary.database;
    match runtime.block_on(sluice::catalog::read_once(config, database)) {
        Ok(procedures) => Some(procedures),
        Err(e) => {
            eprintln!("explain: cannot read the procedure catalog of {database} ({e}); procedures are not detected");
            None
        }
    }
}

/// What the catalog says of each procedure the statement calls that is
/// not in `routing.read_only_procedures`.
fn procedure_verdicts(
    d: &Decision,
    config: Option<&Config>,
    procedures: Option<&DatabaseProcedures>,
) -> Vec<(String, String)> {
    let (Some(c), Some(config), Some(procedures)) = (&d.classification, config, procedures) else {
        return Vec::new();
    };
    let database = &config.primary.database;
    c.unlisted_procedures
        .iter()
        .map(|name| {
            let verdict = procedures.verdict(database, name).map_or_else(
                || "not a procedure of this database (or not read yet): not read-only".to_string(),
                |v| v.to_string(),
            );
            (name.clone(), verdict)
        })
        .collect()
}

/// What the result cache would do with the statement, for a session of
/// no particular user or application in the primary's database (rules
/// naming a user or an application do not match here); `None` without
/// `[cache]`.
fn cache_verdict(config: &Config, d: &Decision, sql: &str) -> Option<JsonCache> {
    use sluice::cache::{policy::qualify, Policy, Statement, Verdict};
    use sluice::classify::Class;
    let policy = Policy::new(config.cache.as_ref()?).ok()?;
    let c = d.classification.as_deref();
    let class = c.map(|c| {
        if d.reason.detected_read_only() {
            c.class_if_unlisted_read_only
        } else {
            c.class
        }
    });
    let database = config.primary.database.as_str();
    let statement = Statement {
        request: Request::Sql(sql),
        classification: c,
        class,
        user: "",
        application: "",
        database,
        in_transaction: false,
    };
    let mut out = JsonCache::default();
    match policy.decide(&statement) {
        Verdict::Cache(plan) => {
            out.cached = true;
            out.ttl_ms = Some(plan.ttl.as_millis() as u64);
            out.text = format!(
                "cached for {} ms ({}); a write to any of [{}] invalidates it",
                plan.ttl.as_millis(),
                if &*plan.source == "hint" {
                    "hint".to_string()
                } else {
                    format!("rule {}", plan.source)
                },
                plan.tables.join(", ")
            );
            out.tables = plan.tables;
        }
        Verdict::Skip(skip) => out.text = format!("not cached: {skip}"),
        Verdict::NotOptedIn => match (c, class) {
            (Some(c), Some(Class::Write | Class::Unknown)) if c.tables.complete => {
                out.invalidates = c
                    .tables
                    .written
                    .iter()
                    .map(|t| qualify(t, database))
                    .collect();
                out.text = format!(
                    "a write: invalidates cached reads of [{}]",
                    out.invalidates.join(", ")
                );
            }
            (_, Some(Class::Write | Class::Unknown)) | (None, _) => {
                out.invalidates = vec!["*".to_string()];
                out.text =
                    "a write whose tables Sluice cannot name: invalidates every cached read".into();
            }
            _ => {
                out.text =
                    "not cached: no [[cache.rules]] entry or /* sluice:cache */ hint opts it in"
                        .into()
            }
        },
    }
    Some(out)
}

fn read_sql(arg: &str) -> std::io::Result<String> {
    if arg != "-" {
        return Ok(arg.to_string());
    }
    let mut sql = String::new();
    std::io::stdin().read_to_string(&mut sql)?;
    Ok(sql)
}

/// Routes `sql` for a fresh session with every configured replica up (one
/// hypothetical replica when there is no configuration or none is configured).
fn decide(
    config: Option<&Config>,
    procedures: Option<&DatabaseProcedures>,
    sql: &str,
) -> Result<(Decision, Vec<String>), sluice::server::StartError> {
    let router = match config {
        Some(c) => sluice::server::router_for(c)?,
        None => sluice::router::Router::new(
            sluice::classify::Classifier::new(16, &[]),
            Vec::new(),
            std::time::Duration::ZERO,
        ),
    };
    let mut names: Vec<String> = config
        .map(|c| {
            c.replicas
                .iter()
                .map(|r| r.display_name().to_string())
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.push("replica".to_string());
    }
    let weights: Vec<u32> = match config {
        Some(c) if !c.replicas.is_empty() => c.replicas.iter().map(|r| r.weight).collect(),
        _ => vec![1],
    };
    let replicas: Vec<ReplicaView> = weights
        .into_iter()
        .map(|weight| ReplicaView {
            available: true,
            weight,
            outstanding: 0,
            lag: None,
        })
        .collect();
    let session = SessionView {
        database: config
            .map(|c| c.primary.database.as_str())
            .unwrap_or("master"),
        procedures,
        ..SessionView::default()
    };
    Ok((
        router.route(Request::Sql(sql), &session, &replicas, Instant::now()),
        names,
    ))
}

fn flag_names(flags: Flags) -> Vec<&'static str> {
    [
        (Flags::CREATES_TEMP_TABLE, "creates_temp_table"),
        (Flags::USES_TEMP_TABLE, "uses_temp_table"),
        (Flags::LOCKING_HINT, "locking_hint"),
        (Flags::SESSION_FUNCTION, "session_function"),
        (Flags::PROCEDURE_CALL, "procedure_call"),
        (Flags::DYNAMIC_SQL, "dynamic_sql"),
        (Flags::CURSOR, "cursor"),
        (Flags::SESSION_LOCK, "session_lock"),
        (Flags::IDENTITY_INSERT, "identity_insert"),
        (Flags::CONTEXT_INFO, "context_info"),
        (Flags::SEQUENCE, "sequence"),
        (Flags::LEXER_FALLBACK, "lexer_fallback"),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, name)| name)
    .collect()
}

fn target_name(target: Target) -> &'static str {
    match target {
        Target::Primary => "primary",
        Target::Replica(_) => "replica",
    }
}

/// Where a pin starts or provably ends, in statement order.
enum PinEffect<'a> {
    Starts(&'a Pin),
    Ends(&'a Pin),
}

fn pin_effects(d: &Decision) -> Vec<PinEffect<'_>> {
    let Some(c) = &d.classification else {
        return Vec::new();
    };
    c.effects
        .iter()
        .filter_map(|e| match e {
            SessionEffect::Pin(pin) => Some(PinEffect::Starts(pin)),
            SessionEffect::Unpin(pin) => Some(PinEffect::Ends(pin)),
            _ => None,
        })
        .collect()
}

impl PinEffect<'_> {
    /// "pins the session: temp table #t", "ends pin: temp table #t dropped".
    fn text(&self) -> String {
        match self {
            PinEffect::Starts(pin) => format!("pins the session: {pin}"),
            PinEffect::Ends(pin) => format!("ends pin: {pin} {}", pin.reason.end_verb()),
        }
    }
}

fn print_text(d: &Decision, replica: Option<&str>) {
    match replica {
        Some(name) => println!("target: replica ({name})"),
        None => println!("target: {}", target_name(d.target)),
    }
    if let Some(c) = &d.classification {
        println!("class:  {}", c.class.as_str());
        let flags = flag_names(c.flags);
        if !flags.is_empty() {
            println!("flags:  {}", flags.join(", "));
        }
    }
    for effect in pin_effects(d) {
        println!("{}", effect.text());
    }
    println!("reason: {}", d.reason);
}

/// The `--json` output: one object with these fields, in this order.
#[derive(Serialize)]
struct JsonDecision<'a> {
    target: &'static str,
    /// The replica's configured name; `null` for the primary.
    replica: Option<&'a str>,
    /// The classifier's class, `"unknown"` when the request was not classified.
    class: &'static str,
    reason: String,
    flags: Vec<&'static str>,
    /// Where the statement starts or ends pinned state, in order.
    pins: Vec<JsonPin>,
    /// With `routing.detect_read_only_procedures`: each called procedure
    /// not in `routing.read_only_procedures`, and its verdict.
    procedures: Vec<JsonProcedure>,
    /// With `[cache]`: what the result cache would do with it.
    cache: Option<JsonCache>,
}

#[derive(Serialize, Default)]
struct JsonCache {
    cached: bool,
    ttl_ms: Option<u64>,
    /// The tables whose writes invalidate the entry.
    tables: Vec<String>,
    /// For a write: the tables whose cached reads it invalidates (`*`: all).
    invalidates: Vec<String>,
    text: String,
}

#[derive(Serialize)]
struct JsonProcedure {
    name: String,
    verdict: String,
}

/// One pin effect of `--json`.
#[derive(Serialize)]
struct JsonPin {
    /// `"starts"` or `"ends"`.
    effect: &'static str,
    /// The pin reason's snake_case label (`temp_table`, `session_lock`, ...).
    reason: &'static str,
    /// The object it names (`#t`, a cursor, an app lock resource), if any.
    name: Option<String>,
    /// The same in words, as the text output has it.
    text: String,
}

impl JsonPin {
    fn new(effect: &PinEffect<'_>) -> Self {
        let (kind, pin) = match effect {
            PinEffect::Starts(pin) => ("starts", pin),
            PinEffect::Ends(pin) => ("ends", pin),
        };
        JsonPin {
            effect: kind,
            reason: pin.reason.label(),
            name: pin.name.clone(),
            text: effect.text(),
        }
    }
}

impl<'a> JsonDecision<'a> {
    fn new(d: &Decision, replica: Option<&'a str>) -> Self {
        JsonDecision {
            target: target_name(d.target),
            replica,
            class: d
                .classification
                .as_ref()
                .map_or("unknown", |c| c.class.as_str()),
            reason: d.reason.to_string(),
            flags: d
                .classification
                .as_ref()
                .map(|c| flag_names(c.flags))
                .unwrap_or_default(),
            pins: pin_effects(d).iter().map(JsonPin::new).collect(),
            procedures: Vec::new(),
            cache: None,
        }
    }
}
