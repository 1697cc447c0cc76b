//! The `sluice` command line: check, hash-password.
use std::io::Write;
use std::process::{Command, Stdio};

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("sluice-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// `sluice check --config <path>`, run to its end.
fn check(config: &std::path::Path) -> std::process::Output {
    sluice()
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn hash_password(password: &str) -> String {
    let mut child = sluice()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn hash_password_prints_a_verifiable_phc_string() {
    let hash = hash_password("s3cret");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let config = write_config(
        "hash",
        &format!(
            "[listen]\naddress = \"127.0.0.1:1\"\n[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\n\
             [primary]\naddress = \"127.0.0.1:2\"\nuser = \"sa\"\npassword = \"x\"\n"
        ),
    );
    let out = check(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_explains_what_is_wrong() {
    let config = write_config(
        "bad",
        "[listen]\naddress = \"127.0.0.1:1\"\n[[users]]\nname = \"a\"\npassword_hash = \"plain\"\n\
         [primary]\naddress = \"127.0.0.1:2\"\nuser = \"sa\"\npassword = \"x\"\n",
    );
    let out = check(&config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("users[0].password_hash") && err.contains("sluice hash-password"),
        "{err}"
    );

    let config = write_config("typo", "[listen]\nadress = \"127.0.0.1:1\"\n");
    let out = check(&config);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("adress"));
}

/// bb8 panics on a zero idle timeout; before the range checks it did so at
/// the first login, under the pool registry's lock.
#[test]
fn check_refuses_a_zero_idle_timeout_with_its_range() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3nB0ajhdTWjCXUyH8nHnUoXjEpGFR1Ou3X3Pw2EXgrk";
    let config = write_config(
        "idle0",
        &format!(
            "[listen]\naddress = \"127.0.0.1:1\"\n[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\n\
             [primary]\naddress = \"127.0.0.1:2\"\nuser = \"sa\"\npassword = \"x\"\n\
             [pool]\nidle_timeout_ms = 0\n"
        ),
    );
    let out = check(&config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pool.idle_timeout_ms = 0")
            && err.contains("1..=86400000")
            && err.contains("fix"),
        "{err}"
    );
}

#[test]
fn check_refuses_an_unknown_log_format_or_level() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3nB0ajhdTWjCXUyH8nHnUoXjEpGFR1Ou3X3Pw2EXgrk";
    let base = format!(
        "[listen]\naddress = \"127.0.0.1:1\"\n[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\n\
         [primary]\naddress = \"127.0.0.1:2\"\nuser = \"sa\"\npassword = \"x\"\n[log]\n"
    );
    let check = |name: &str, log: &str| {
        let config = write_config(name, &format!("{base}{log}\n"));
        let out = check(&config);
        assert!(!out.status.success(), "{log} accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check("log-xml", "format = \"xml\"");
    assert!(
        err.contains("format = \"xml\"") && err.contains("expected `text` or `json`"),
        "{err}"
    );
    let err = check("log-loud", "level = \"loud\"");
    assert!(
        err.contains("log.level = \"loud\": not a log level") && err.contains("fix: use one of"),
        "{err}"
    );
}

#[test]
fn the_example_proxy_toml_is_valid() {
    let out = sluice()
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml"),
        ])
        .env("SLUICE_REPLICA_PASSWORD", "x")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn explain_json(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = sluice()
        .arg("explain")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn explain_prints_target_class_and_reason() {
    let read = explain_json(
        &["--json", "SELECT name FROM dbo.users WHERE id = @id"],
        None,
    );
    assert!(read.starts_with("{\"target\":\"replica\""), "{read}");
    assert!(read.contains("\"class\":\"read\""), "{read}");
    let write = explain_json(
        &["--json", "-"],
        Some("UPDATE dbo.users SET name = N'x' WHERE id = 1"),
    );
    assert!(write.starts_with("{\"target\":\"primary\""), "{write}");
    assert!(
        write.contains("\"class\":\"write\"") && write.contains("\"reason\":\""),
        "{write}"
    );
    let text = explain_json(&["/* sluice:primary */ SELECT 1"], None);
    assert!(
        text.contains("target: primary") && text.contains("hint sluice:primary"),
        "{text}"
    );
}

/// A statement that starts with a `--` comment is SQL, not a flag; `-` still
/// reads standard input, and flags after the statement still count.
#[test]
fn explain_takes_a_statement_that_starts_with_a_comment() {
    let write = explain_json(
        &[
            "--json",
            "-- note\nUPDATE dbo.users SET name = N'x' WHERE id = 1",
        ],
        None,
    );
    assert!(
        write.starts_with("{\"target\":\"primary\"") && write.contains("\"class\":\"write\""),
        "{write}"
    );
    let hinted = explain_json(
        &["-- sluice:replica\nSELECT name FROM dbo.users", "--json"],
        None,
    );
    assert!(
        hinted.starts_with("{\"target\":\"replica\"") && hinted.contains("hint sluice:replica"),
        "{hinted}"
    );
    let text = explain_json(&["-"], Some("-- from stdin\nDELETE FROM dbo.users"));
    assert!(
        text.contains("target: primary") && text.contains("class:  write"),
        "{text}"
    );
}

#[test]
fn explain_json_is_one_object_with_the_documented_fields() {
    let out = explain_json(&["--json", "SELECT * FROM #t WITH (UPDLOCK)"], None);
    let value: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let object = value.as_object().expect("one object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cache",
            "class",
            "flags",
            "pins",
            "procedures",
            "reason",
            "replica",
            "target"
        ]
    );
    assert_eq!(object["target"], "primary");
    assert_eq!(object["replica"], serde_json::Value::Null);
    assert_eq!(object["class"], "read");
    assert_eq!(
        object["flags"],
        serde_json::json!(["uses_temp_table", "locking_hint"])
    );
    assert!(object["reason"].as_str().is_some_and(|r| r.contains("#t")));
    assert_eq!(object["pins"], serde_json::json!([]));
    // Without a configuration there is no `[cache]`.
    assert_eq!(object["cache"], serde_json::Value::Null);
}

/// `explain` says where a statement starts pinned state and where it
/// provably ends it, in statement order, in text and in JSON.
#[test]
fn explain_shows_where_pins_start_and_end() {
    let text = explain_json(
        &["CREATE TABLE #t (a INT); DROP TABLE #t; DECLARE c CURSOR FOR SELECT 1"],
        None,
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pins") || l.starts_with("ends"))
        .collect();
    assert_eq!(
        lines,
        [
            "pins the session: temp table #t",
            "ends pin: temp table #t dropped",
            "pins the session: cursor c",
        ],
        "{text}"
    );
    let out = explain_json(
        &[
            "--json",
            "EXEC sp_releaseapplock @Resource = 'orders', @LockOwner = 'Session'",
        ],
        None,
    );
    let value: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(
        value["pins"],
        serde_json::json!([{
            "effect": "ends",
            "reason": "session_lock",
            "name": "orders",
            "text": "ends pin: session app lock 'orders' released"
        }])
    );
    let set = explain_json(&["SET SHOWPLAN_XML ON"], None);
    assert!(
        set.contains("pins the session: SET option Sluice does not track: SHOWPLAN_XML"),
        "{set}"
    );
}

#[test]
fn check_and_explain_know_shadow_mode() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3nB0ajhdTWjCXUyH8nHnUoXjEpGFR1Ou3X3Pw2EXgrk";
    let text = |routing: &str| {
        format!(
            "[listen]\naddress = \"127.0.0.1:1\"\n[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\n\
             [primary]\naddress = \"127.0.0.1:2\"\nuser = \"sa\"\npassword = \"x\"\n\
             [[replicas]]\nname = \"r1\"\naddress = \"127.0.0.1:3\"\nuser = \"sa\"\npassword = \"x\"\n\
             [routing]\nmode = \"shadow\"\n{routing}"
        )
    };
    let bad = write_config("shadow-bad", &text("shadow_sample = 2.0\n"));
    let out = check(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("routing.shadow_sample = 2") && err.contains("0..=1") && err.contains("fix"),
        "{err}"
    );
    let good = write_config("shadow-good", &text("shadow_sample = 0.25\n"));
    let out = check(&good);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("OK") && said.contains("shadow mode sampling 0.25"),
        "{said}"
    );
    let config = good.to_str().expect("a UTF-8 path");
    let explained = explain_json(&["--config", config, "SELECT name FROM dbo.users"], None);
    assert!(
        explained.contains("target: replica (r1)") && explained.contains("runs on the primary"),
        "{explained}"
    );
}

/// `check` summarises `[cache]` without the Redis password; `explain` says
/// whether a statement would be cached, why not, and what a write
/// invalidates.
#[test]
fn check_and_explain_know_the_result_cache() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$3nB0ajhdTWjCXUyH8nHnUoXjEpGFR1Ou3X3Pw2EXgrk";
    let text = |cache: &str| {
        format!(
            "[listen]\naddress = \"127.0.0.1:1\"\n[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\n\
             [primary]\naddress = \"127.0.0.1:2\"\nuser = \"sa\"\npassword = \"x\"\ndatabase = \"Shop\"\n\
             [cache]\n{cache}"
        )
    };
    let bad = write_config("cache-bad", &text("redis_url = \"http://cache:6379\"\n"));
    let out = check(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cache.redis_url") && err.contains("fix"),
        "{err}"
    );
    let good = write_config(
        "cache-good",
        &text(
            "redis_url = \"rediss://:secret@cache.example:6380\"\n\
             [[cache.rules]]\nname = \"orders\"\nmatch_sql = \"(?i)from dbo.orders\"\nttl_ms = 30000\n",
        ),
    );
    let out = check(&good);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("result cache 64 MiB in memory")
            && said.contains("rediss://***@cache.example:6380")
            && said.contains("1 rule(s)")
            && !said.contains("secret"),
        "{said}"
    );
    let config = good.to_str().expect("a UTF-8 path");
    let cached = explain_json(&["--config", config, "SELECT * FROM dbo.orders"], None);
    assert!(
        cached.contains("cache:  cached for 30000 ms (rule orders)")
            && cached.contains("[shop.orders]"),
        "{cached}"
    );
    let volatile = explain_json(
        &[
            "--config",
            config,
            "--json",
            "SELECT GETDATE() FROM dbo.orders",
        ],
        None,
    );
    let value: serde_json::Value = serde_json::from_str(&volatile).expect("valid JSON");
    assert_eq!(value["cache"]["cached"], false, "{volatile}");
    assert!(
        value["cache"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("GETDATE")),
        "{volatile}"
    );
    let write = explain_json(
        &[
            "--config",
            config,
            "--json",
            "UPDATE dbo.orders SET total = 0",
        ],
        None,
    );
    let value: serde_json::Value = serde_json::from_str(&write).expect("valid JSON");
    assert_eq!(
        value["cache"]["invalidates"],
        serde_json::json!(["shop.orders"]),
        "{write}"
    );
    let unlisted = explain_json(&["--config", config, "SELECT * FROM dbo.customers"], None);
    assert!(
        unlisted.contains("not cached: no [[cache.rules]]"),
        "{unlisted}"
    );
}
