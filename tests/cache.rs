//! The result cache, driven by tiberius and a raw TDS client through
//! Sluice in front of an embedded engine, with a real `redis-server` for
//! the shared tier.
//!
//! Whether a read was served from the cache is seen by changing its row
//! behind Sluice's back (on the engine directly): a hit still returns the
//! old value, anything that reached the backend the new one.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::raw::RawClient;
use common::redis::RedisServer;
use common::*;

const PRICES: &str = "CREATE TABLE dbo.prices (id INT PRIMARY KEY, v NVARCHAR(40));
     INSERT INTO dbo.prices VALUES (1, N'first');
     CREATE TABLE dbo.other (id INT PRIMARY KEY, v NVARCHAR(40));
     INSERT INTO dbo.other VALUES (1, N'other');";
const READ: &str = "SELECT v FROM dbo.prices WHERE id = 1";
const RULE: &str =
    "[[cache.rules]]\nname = \"prices\"\nmatch_sql = \"(?i)dbo\\\\.prices\"\nttl_ms = 60000\n";
/// How long a condition may take to come true (Redis restarting, an entry
/// expiring).
const WITHIN: Duration = Duration::from_secs(10);

async fn primary() -> Backend {
    let primary = Backend::start().await;
    primary.exec(PRICES);
    primary
}

/// A Sluice in front of `primary` with `cache` as its `[cache]` section.
async fn sluice(primary: &Backend, cache: &str) -> SocketAddr {
    let text = config_text(primary.addr, &[]) + "[cache]\n" + cache;
    start_sluice(parse_config(&text)).await
}

/// Sets the row behind Sluice's back.
fn set_behind(primary: &Backend, v: &str) {
    primary.exec(&format!("UPDATE dbo.prices SET v = N'{v}' WHERE id = 1"));
}

#[tokio::test]
async fn a_hit_replays_the_backends_bytes_and_does_not_reach_it() {
    let primary = primary().await;
    let addr = sluice(&primary, RULE).await;
    let mut raw = RawClient::login(addr, USER, PASSWORD).await;
    raw.send_batch(READ).await;
    let from_backend = raw.read_message().await;
    set_behind(&primary, "changed behind");
    raw.send_batch(READ).await;
    let from_cache = raw.read_message().await;
    assert_eq!(
        from_cache, from_backend,
        "a hit is the backend's response, byte for byte"
    );
    // tiberius reads it like any response, in another session.
    let mut client = connect(addr).await;
    assert_eq!(whereami(&mut client, READ).await, "first");
    // A statement no rule opts in reaches the backend.
    assert_eq!(
        whereami(&mut client, "SELECT v FROM dbo.other WHERE id = 1").await,
        "other"
    );
}

#[tokio::test]
async fn nothing_on_the_never_cache_list_is_served_from_the_cache() {
    let primary = primary().await;
    let addr = sluice(&primary, RULE).await;
    let mut client = connect(addr).await;
    // A plain read is cached: the method sees caching when there is some.
    assert_eq!(whereami(&mut client, READ).await, "first");
    set_behind(&primary, "second");
    assert_eq!(whereami(&mut client, READ).await, "first");
    run(
        &mut client,
        "CREATE TABLE #ids (id INT); INSERT INTO #ids VALUES (1)",
    )
    .await;
    let never = [
        "SELECT v, GETDATE() AS t FROM dbo.prices WHERE id = 1",
        "SELECT v, GETUTCDATE() AS t FROM dbo.prices WHERE id = 1",
        "SELECT v, NEWID() AS t FROM dbo.prices WHERE id = 1",
        "SELECT v, RAND() AS t FROM dbo.prices WHERE id = 1",
        "SELECT v, @@SPID AS t FROM dbo.prices WHERE id = 1",
        "SELECT v, CURRENT_TIMESTAMP AS t FROM dbo.prices WHERE id = 1",
        "SELECT v FROM dbo.prices WITH (UPDLOCK) WHERE id = 1",
        "SELECT p.v AS v FROM dbo.prices p JOIN #ids i ON i.id = p.id",
        "SET DATEFORMAT dmy; SELECT v FROM dbo.prices WHERE id = 1",
    ];
    for (i, sql) in never.iter().enumerate() {
        let before = format!("before {i}");
        let after = format!("after {i}");
        set_behind(&primary, &before);
        assert_eq!(whereami(&mut client, sql).await, before, "{sql}");
        set_behind(&primary, &after);
        assert_eq!(whereami(&mut client, sql).await, after, "{sql} was cached");
    }
    // Inside a transaction, not even a read the rule opts in.
    run(&mut client, "BEGIN TRANSACTION").await;
    set_behind(&primary, "in transaction");
    assert_eq!(whereami(&mut client, READ).await, "in transaction");
    run(&mut client, "COMMIT").await;
}

#[tokio::test]
async fn errors_and_responses_over_max_entry_bytes_are_not_stored() {
    let primary = primary().await;
    let addr = sluice(&primary, &format!("max_entry_bytes = 200\n{RULE}")).await;
    let mut client = connect(addr).await;
    let big = "SELECT v, REPLICATE(N'x', 400) AS pad FROM dbo.prices WHERE id = 1";
    assert_eq!(whereami(&mut client, big).await, "first");
    set_behind(&primary, "second");
    assert_eq!(
        whereami(&mut client, big).await,
        "second",
        "too large to cache"
    );
    // An error: the next run reaches the backend again.
    let failing = "SELECT v FROM dbo.prices WHERE id = 1; SELECT v FROM dbo.missing";
    let mut raw = RawClient::login(addr, USER, PASSWORD).await;
    raw.send_batch(failing).await;
    let reply = common::raw::Reply::read(&mut raw).await;
    assert!(!reply.errors().is_empty(), "dbo.missing does not exist");
    primary.exec(
        "CREATE TABLE dbo.missing (v NVARCHAR(40)); INSERT INTO dbo.missing VALUES (N'now here')",
    );
    raw.send_batch(failing).await;
    common::raw::Reply::read(&mut raw)
        .await
        .assert_no_error("the error was not replayed from the cache");
}

#[tokio::test]
async fn a_write_through_sluice_invalidates_before_its_response_arrives() {
    let primary = primary().await;
    let addr = sluice(&primary, RULE).await;
    let mut reader = connect(addr).await;
    let mut writer = connect(addr).await;
    for i in 0..50 {
        let v = format!("v{i}");
        run(
            &mut writer,
            &format!("UPDATE dbo.prices SET v = N'{v}' WHERE id = 1"),
        )
        .await;
        assert_eq!(whereami(&mut reader, READ).await, v, "stale read");
        assert_eq!(whereami(&mut reader, READ).await, v, "stale read");
    }
    // Writes to another table leave the entry alone.
    run(&mut writer, "UPDATE dbo.other SET v = N'x' WHERE id = 1").await;
    set_behind(&primary, "behind");
    assert_eq!(whereami(&mut reader, READ).await, "v49");
    // A write inside a transaction invalidates again at its commit.
    run(
        &mut writer,
        "BEGIN TRANSACTION; UPDATE dbo.prices SET v = N'in tx' WHERE id = 1",
    )
    .await;
    run(&mut writer, "COMMIT").await;
    assert_eq!(whereami(&mut reader, READ).await, "in tx");
}

#[tokio::test]
async fn a_hint_opts_in_and_its_ttl_expires_the_entry() {
    let primary = primary().await;
    let addr = sluice(&primary, "").await;
    let mut client = connect(addr).await;
    let hinted = "/* sluice:cache ttl=2s */ SELECT v FROM dbo.prices WHERE id = 1";
    assert_eq!(whereami(&mut client, hinted).await, "first");
    set_behind(&primary, "second");
    assert_eq!(whereami(&mut client, hinted).await, "first", "a hit");
    // Without a hint nothing is cached.
    assert_eq!(whereami(&mut client, READ).await, "second");
    let deadline = std::time::Instant::now() + WITHIN;
    while whereami(&mut client, hinted).await != "second" {
        assert!(
            std::time::Instant::now() < deadline,
            "the entry outlived its ttl"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two Sluice instances sharing one Redis.
async fn two_instances(redis: &RedisServer, primary: &Backend) -> (SocketAddr, SocketAddr) {
    let cache = format!(
        "redis_url = \"{}\"\nredis_timeout_ms = 500\n{RULE}",
        redis.url()
    );
    (sluice(primary, &cache).await, sluice(primary, &cache).await)
}

#[tokio::test]
async fn two_instances_share_entries_and_never_read_stale_after_a_write() {
    let redis = RedisServer::start().await;
    let primary = primary().await;
    let (a, b) = two_instances(&redis, &primary).await;
    let mut on_a = connect(a).await;
    let mut on_b = connect(b).await;
    assert_eq!(whereami(&mut on_a, READ).await, "first");
    set_behind(&primary, "behind");
    // B never ran it: its answer comes from the entry A stored in Redis.
    assert_eq!(whereami(&mut on_b, READ).await, "first");
    for i in 0..100 {
        let v = format!("v{i}");
        let (writer, reader) = if i % 2 == 0 {
            (&mut on_a, &mut on_b)
        } else {
            (&mut on_b, &mut on_a)
        };
        // The reader holds a current entry before each write.
        whereami(reader, READ).await;
        run(
            writer,
            &format!("UPDATE dbo.prices SET v = N'{v}' WHERE id = 1"),
        )
        .await;
        assert_eq!(
            whereami(reader, READ).await,
            v,
            "stale read after a peer's write"
        );
    }
}

/// Writes `v` through A; both instances must read it at once.
async fn write_then_read_both(on_a: &mut TestClient, on_b: &mut TestClient, v: &str) {
    run(
        on_a,
        &format!("UPDATE dbo.prices SET v = N'{v}' WHERE id = 1"),
    )
    .await;
    assert_eq!(whereami(on_b, READ).await, v);
    assert_eq!(whereami(on_a, READ).await, v);
}

#[tokio::test]
async fn killing_redis_mid_run_fails_no_query_and_the_cache_comes_back() {
    let mut redis = RedisServer::start().await;
    let primary = primary().await;
    let (a, b) = two_instances(&redis, &primary).await;
    let mut on_a = connect(a).await;
    let mut on_b = connect(b).await;
    let mut step = 0;
    for phase in ["before", "killed", "restarted"] {
        match phase {
            "killed" => redis.kill(),
            "restarted" => redis.restart().await,
            _ => {}
        }
        for _ in 0..10 {
            step += 1;
            write_then_read_both(&mut on_a, &mut on_b, &format!("{phase} {step}")).await;
        }
    }
    // Recovered: entries are served again.
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let now = whereami(&mut on_a, READ).await;
        set_behind(&primary, "behind again");
        let hit = whereami(&mut on_a, READ).await == now;
        set_behind(&primary, &now);
        if hit {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cache never came back after Redis did"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_miss_fills_the_cache_from_the_primary_never_a_replica() {
    let primary = Backend::start().await;
    let replica = Backend::start().await;
    for (backend, name) in [(&primary, "primary"), (&replica, "replica")] {
        backend.exec(&format!(
            "CREATE TABLE dbo.whereami (v NVARCHAR(20)); INSERT INTO dbo.whereami VALUES (N'{name}');"
        ));
    }
    let text = config_text(primary.addr, &[replica.addr])
        + "[routing]\nread_your_writes_ms = 0\n[cache]\n[[cache.rules]]\nmatch_sql = \"cached\"\nttl_ms = 60000\n";
    let addr = start_sluice(parse_config(&text)).await;
    let mut client = connect(addr).await;
    // Reads that are not cached go to the replica...
    let plain = "SELECT v FROM dbo.whereami";
    assert_eq!(whereami(&mut client, plain).await, "replica");
    // ...a cached one's miss to the primary, and its hits carry that.
    let cached = "SELECT v FROM dbo.whereami /* cached */";
    assert_eq!(whereami(&mut client, cached).await, "primary");
    primary.exec("UPDATE dbo.whereami SET v = N'changed'");
    assert_eq!(whereami(&mut client, cached).await, "primary");
}

/// A command that fails marks the shared tier down while Redis itself may
/// still answer; the subscription task then checks every 250 ms and
/// brings the tier back. Messages from peers arriving more often than that
/// must not hold the check off: before, each one re-armed its timer, and a
/// busy channel kept the cache bypassed for as long as it stayed busy.
#[tokio::test]
async fn a_busy_invalidation_channel_does_not_keep_the_cache_down() {
    let redis = RedisServer::start().await;
    let primary = primary().await;
    let cache = format!(
        "redis_url = \"{}\"\nredis_timeout_ms = 500\n{RULE}",
        redis.url()
    );
    let addr = sluice(&primary, &cache).await;
    let mut client = connect(addr).await;
    assert_eq!(whereami(&mut client, READ).await, "first");

    let options = || sluice::redis::RedisOptions::new(redis.url());
    let peer = sluice::redis::Redis::new(options()).expect("redis options");
    let publishing = tokio::spawn(async move {
        loop {
            let publish = sluice::redis::Command::new("PUBLISH")
                .arg("sluice:invalidate")
                .arg("a peer's message that names nothing");
            peer.run(&[publish]).await.ok();
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    // Sluice's pooled Redis connections die (not its subscription, and
    // not Redis): its next cache command fails and marks the tier down.
    let killer = sluice::redis::Redis::new(options()).expect("redis options");
    let kill = sluice::redis::Command::new("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal");
    killer.run(&[kill]).await.expect("CLIENT KILL");
    set_behind(&primary, "bypassed");
    assert_eq!(whereami(&mut client, READ).await, "bypassed");

    // Served from the cache again: a value changed behind Sluice's back
    // is not seen.
    let deadline = std::time::Instant::now() + WITHIN;
    for step in 0.. {
        let now = whereami(&mut client, READ).await;
        set_behind(&primary, &format!("behind {step}"));
        if whereami(&mut client, READ).await == now {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cache stayed bypassed while peers' messages kept coming"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publishing.abort();
}
