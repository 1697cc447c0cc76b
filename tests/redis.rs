//! The Redis client (src/redis) against a real redis-server: pipelines,
//! error replies, AUTH, SELECT, pub/sub, a server that dies and comes back,
//! TLS; and against fake servers that stall, send garbage or too much.
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis::{RedisServer, RedisServerOptions};
use sluice::redis::{Command, Redis, RedisError, RedisOptions, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_millis(500);

fn options(url: &str) -> RedisOptions {
    RedisOptions {
        timeout: TIMEOUT,
        ..RedisOptions::new(url)
    }
}

fn client(url: &str) -> Redis {
    Redis::new(options(url)).expect("valid options")
}

fn cmd(args: &[&str]) -> Command {
    args[1..]
        .iter()
        .fold(Command::new(args[0]), |command, arg| command.arg(arg))
}

fn bulk(s: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

async fn run(redis: &Redis, commands: &[Command]) -> Vec<Value> {
    redis.run(commands).await.expect("run succeeds")
}

/// The server's id for the connection a run used: equal ids, same connection.
async fn client_id(redis: &Redis) -> i64 {
    match run(redis, &[cmd(&["CLIENT", "ID"])]).await.as_slice() {
        [Value::Int(id)] => *id,
        other => panic!("CLIENT ID replied {other:?}"),
    }
}

#[tokio::test]
async fn a_pipeline_gets_one_reply_per_command_in_order() {
    let server = RedisServer::start().await;
    let redis = client(&server.url());
    let replies = run(
        &redis,
        &[
            cmd(&["SET", "k", "v1", "PX", "60000"]),
            cmd(&["GET", "k"]),
            cmd(&["MGET", "k", "missing"]),
            cmd(&["GET", "missing"]),
            cmd(&["INCR", "n"]),
            cmd(&["INCR", "n"]),
            cmd(&["PUBLISH", "nobody-listens", "x"]),
            Command::new("SET").arg("bin").arg([0u8, 13, 10, 255]),
            Command::new("GET").arg("bin"),
        ],
    )
    .await;
    assert_eq!(
        replies,
        vec![
            Value::Simple("OK".into()),
            bulk("v1"),
            Value::Array(vec![bulk("v1"), Value::Nil]),
            Value::Nil,
            Value::Int(1),
            Value::Int(2),
            Value::Int(0),
            Value::Simple("OK".into()),
            Value::Bulk(Bytes::from_static(&[0, 13, 10, 255])),
        ]
    );
    match run(&redis, &[cmd(&["PTTL", "k"])]).await.as_slice() {
        [Value::Int(ms)] => assert!((1..=60_000).contains(ms), "PTTL {ms}"),
        other => panic!("PTTL replied {other:?}"),
    }
}

#[tokio::test]
async fn a_large_value_arrives_over_many_reads() {
    let server = RedisServer::start().await;
    let redis = Redis::new(RedisOptions {
        timeout: Duration::from_secs(10),
        ..RedisOptions::new(server.url())
    })
    .expect("valid");
    let value: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    run(&redis, &[Command::new("SET").arg("big").arg(&value)]).await;
    let replies = run(&redis, &[cmd(&["GET", "big"]), cmd(&["STRLEN", "big"])]).await;
    assert_eq!(
        replies,
        [Value::Bulk(Bytes::from(value)), Value::Int(3 * 1024 * 1024)]
    );
}

#[tokio::test]
async fn an_error_reply_fills_its_slot_and_keeps_the_connection() {
    let server = RedisServer::start().await;
    let redis = client(&server.url());
    let id = client_id(&redis).await;
    let replies = run(
        &redis,
        &[
            cmd(&["SET", "s", "text"]),
            cmd(&["INCR", "s"]),
            cmd(&["GET", "s"]),
        ],
    )
    .await;
    assert_eq!(replies[0], Value::Simple("OK".into()));
    assert!(
        matches!(&replies[1], Value::Error(e) if e.contains("not an integer")),
        "{:?}",
        replies[1]
    );
    assert_eq!(replies[2], bulk("text"));
    assert_eq!(client_id(&redis).await, id, "the connection was reused");
}

#[tokio::test]
async fn connections_are_reused_and_at_most_max_connections_kept() {
    let server = RedisServer::start().await;
    let redis = client(&server.url());
    assert_eq!(client_id(&redis).await, client_id(&redis).await);
    let none_kept = Redis::new(RedisOptions {
        max_connections: 0,
        ..options(&server.url())
    })
    .expect("valid");
    assert_ne!(client_id(&none_kept).await, client_id(&none_kept).await);
}

#[tokio::test]
async fn auth_with_the_right_password_and_refused_with_a_wrong_one() {
    let server = RedisServer::start_with(RedisServerOptions {
        password: Some("s3cret/+=".into()),
        tls: false,
    })
    .await;
    let in_url = client(&format!("redis://:s3cret%2F+=@127.0.0.1:{}", server.port));
    assert_eq!(
        run(&in_url, &[cmd(&["PING"])]).await,
        [Value::Simple("PONG".into())]
    );
    let as_default_user = client(&format!(
        "redis://default:s3cret%2F+=@127.0.0.1:{}",
        server.port
    ));
    assert_eq!(run(&as_default_user, &[cmd(&["PING"])]).await.len(), 1);

    // The options' password (from the environment) wins over the URL's.
    let from_env = Redis::new(RedisOptions {
        password: Some("s3cret/+=".into()),
        ..options(&format!("redis://:wrong@127.0.0.1:{}", server.port))
    })
    .expect("valid");
    assert_eq!(run(&from_env, &[cmd(&["PING"])]).await.len(), 1);

    let wrong = client(&format!("redis://:wrong@127.0.0.1:{}", server.port));
    match wrong.run(&[cmd(&["PING"])]).await {
        Err(RedisError::Auth(message)) => assert!(message.contains("WRONGPASS"), "{message}"),
        other => panic!("expected an Auth error, got {other:?}"),
    }
    let without = client(&server.url());
    match run(&without, &[cmd(&["GET", "k"])]).await.as_slice() {
        [Value::Error(message)] => assert!(message.starts_with("NOAUTH"), "{message}"),
        other => panic!("expected NOAUTH, got {other:?}"),
    }
}

#[tokio::test]
async fn the_url_selects_the_database() {
    let server = RedisServer::start().await;
    let db2 = client(&format!("{}/2", server.url()));
    let db0 = client(&server.url());
    run(&db2, &[cmd(&["SET", "where", "two"])]).await;
    assert_eq!(run(&db2, &[cmd(&["GET", "where"])]).await, [bulk("two")]);
    assert_eq!(run(&db0, &[cmd(&["GET", "where"])]).await, [Value::Nil]);
    let out_of_range = client(&format!("{}/99", server.url()));
    match out_of_range.run(&[cmd(&["PING"])]).await {
        Err(RedisError::Refused(message)) => assert!(message.contains("SELECT 99"), "{message}"),
        other => panic!("expected SELECT refused, got {other:?}"),
    }
}

async fn next_message(subscription: &mut sluice::redis::Subscription) -> Bytes {
    tokio::time::timeout(Duration::from_secs(5), subscription.next_message())
        .await
        .expect("a message within 5 s")
        .expect("a message")
}

#[tokio::test]
async fn subscribe_receives_what_another_connection_publishes() {
    let server = RedisServer::start().await;
    let redis = client(&server.url());
    let mut subscription = redis.subscribe(b"invalidate").await.expect("subscribed");
    let publish = |payload: &'static [u8]| Command::new("PUBLISH").arg("invalidate").arg(payload);
    let replies = run(
        &redis,
        &[
            publish(b"first"),
            cmd(&["PUBLISH", "other", "x"]),
            publish(b"\0\r\n"),
        ],
    )
    .await;
    assert_eq!(replies, [Value::Int(1), Value::Int(0), Value::Int(1)]);
    assert_eq!(next_message(&mut subscription).await, "first");
    assert_eq!(next_message(&mut subscription).await, &b"\0\r\n"[..]);
}

#[tokio::test]
async fn a_killed_server_fails_promptly_and_a_restarted_one_works_again() {
    let mut server = RedisServer::start().await;
    let redis = client(&server.url());
    // Several idle connections, all to the server about to die.
    let blpop = [cmd(&["BLPOP", "nothing", "0.05"])];
    let runs = (0..4).map(|_| redis.run(&blpop));
    for result in futures_util::future::join_all(runs).await {
        result.expect("BLPOP times out with nil");
    }
    let mut subscription = redis.subscribe(b"ch").await.expect("subscribed");

    server.kill();
    let start = Instant::now();
    let result = redis.run(&[cmd(&["PING"])]).await;
    assert!(result.is_err(), "{result:?}");
    assert!(start.elapsed() < TIMEOUT + Duration::from_millis(200));
    let lost = tokio::time::timeout(Duration::from_secs(5), subscription.next_message()).await;
    assert!(
        matches!(lost, Ok(Err(_))),
        "the subscription notices: {lost:?}"
    );
    let refused = redis.run(&[cmd(&["PING"])]).await;
    assert!(matches!(refused, Err(RedisError::Io(_))), "{refused:?}");

    server.restart().await;
    // The idle connections died with the server and were discarded with
    // the first failure, so the very next run opens a new one.
    assert_eq!(
        run(&redis, &[cmd(&["PING"])]).await,
        [Value::Simple("PONG".into())]
    );
    let mut subscription = redis.subscribe(b"ch").await.expect("subscribed again");
    run(&redis, &[cmd(&["PUBLISH", "ch", "back"])]).await;
    assert_eq!(next_message(&mut subscription).await, "back");
}

/// A listener that accepts connections and then runs `serve` on each.
async fn fake_server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    addr
}

/// A fake server that reads a request and answers `reply`, then keeps the
/// connection open without another word.
async fn answering(reply: &'static [u8]) -> Redis {
    let addr = fake_server(move |mut socket| async move {
        let mut request = [0u8; 1024];
        if socket.read(&mut request).await.is_ok() {
            let _ = socket.write_all(reply).await;
        }
        let _ = socket.read(&mut request).await;
    })
    .await;
    Redis::new(RedisOptions {
        max_reply_bytes: 1024,
        ..options(&format!("redis://{addr}"))
    })
    .expect("valid")
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let addr = fake_server(|socket| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(socket);
    })
    .await;
    let redis = client(&format!("redis://{addr}"));
    let start = Instant::now();
    let result = redis.run(&[cmd(&["GET", "k"])]).await;
    assert!(matches!(result, Err(RedisError::Timeout)), "{result:?}");
    let elapsed = start.elapsed();
    assert!(elapsed >= TIMEOUT && elapsed < TIMEOUT * 2, "{elapsed:?}");
    let result = redis.subscribe(b"ch").await;
    assert!(
        matches!(result, Err(RedisError::Timeout)),
        "{:?}",
        result.err()
    );
    // Its AUTH goes unanswered too.
    let with_password = client(&format!("redis://:pw@{addr}"));
    let result = with_password.run(&[cmd(&["GET", "k"])]).await;
    assert!(matches!(result, Err(RedisError::Timeout)), "{result:?}");
}

#[tokio::test]
async fn garbage_from_the_server_is_a_protocol_error() {
    for reply in [
        &b"HTTP/1.1 400 Bad Request\r\n\r\n"[..],
        b"$-5\r\n",
        b":12x\r\n",
        b"$3\r\nabcdef\r\n",
        b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        b"_\r\n",
        b"+OK\r\n+OK\r\n",
    ] {
        let redis = answering(reply).await;
        let result = redis.run(&[cmd(&["GET", "k"])]).await;
        assert!(
            matches!(result, Err(RedisError::Protocol(_))),
            "{:?}: {result:?}",
            String::from_utf8_lossy(reply)
        );
    }
}

#[tokio::test]
async fn a_reply_over_the_limit_is_refused_before_it_arrives() {
    let redis = answering(b"$1000000000\r\n").await;
    let result = redis.run(&[cmd(&["GET", "k"])]).await;
    assert!(matches!(result, Err(RedisError::Protocol(_))), "{result:?}");
}

#[tokio::test]
async fn a_closed_connection_mid_reply_is_an_io_error() {
    let addr = fake_server(|mut socket| async move {
        let mut request = [0u8; 1024];
        let _ = socket.read(&mut request).await;
        let _ = socket.write_all(b"$10\r\nabc").await;
    })
    .await;
    let result = client(&format!("redis://{addr}"))
        .run(&[cmd(&["GET", "k"])])
        .await;
    assert!(matches!(result, Err(RedisError::Io(_))), "{result:?}");
}

#[tokio::test]
async fn replies_over_max_reply_bytes_fail_and_drop_the_connection() {
    let server = RedisServer::start().await;
    let redis = Redis::new(RedisOptions {
        max_reply_bytes: 1024,
        ..options(&server.url())
    })
    .expect("valid");
    let id = client_id(&redis).await;
    run(
        &redis,
        &[
            cmd(&["SET", "big", &"x".repeat(2000)]),
            cmd(&["SET", "medium", &"y".repeat(600)]),
        ],
    )
    .await;
    let result = redis.run(&[cmd(&["GET", "big"])]).await;
    assert!(matches!(result, Err(RedisError::Protocol(_))), "{result:?}");
    let new_id = client_id(&redis).await;
    assert_ne!(new_id, id, "the failed connection was not reused");
    // Each reply fits, the pipeline's together do not.
    assert_eq!(run(&redis, &[cmd(&["GET", "medium"])]).await.len(), 1);
    let result = redis
        .run(&[cmd(&["GET", "medium"]), cmd(&["GET", "medium"])])
        .await;
    assert!(matches!(result, Err(RedisError::Protocol(_))), "{result:?}");
    assert_ne!(client_id(&redis).await, new_id);
}

#[tokio::test]
async fn refused_connection_is_an_io_error() {
    let url = format!("redis://127.0.0.1:{}", common::free_port());
    let result = client(&url).run(&[cmd(&["PING"])]).await;
    assert!(matches!(result, Err(RedisError::Io(_))), "{result:?}");
}

#[tokio::test]
async fn tls_with_a_private_ca_and_a_password() {
    let server = RedisServer::start_with(RedisServerOptions {
        password: Some("pw".into()),
        tls: true,
    })
    .await;
    let tls = server.tls.clone().expect("tls");
    for host in ["127.0.0.1", "localhost"] {
        let redis = Redis::new(RedisOptions {
            ca_file: Some(tls.ca_bundle.clone()),
            password: Some("pw".into()),
            ..options(&format!("rediss://{host}:{}", tls.port))
        })
        .expect("valid");
        assert_eq!(redis.describe(), format!("{host}:{} (tls)", tls.port));
        let replies = run(&redis, &[cmd(&["SET", "k", "v"]), cmd(&["GET", "k"])]).await;
        assert_eq!(replies[1], bulk("v"));
        let mut subscription = redis.subscribe(b"ch").await.expect("subscribed");
        run(&redis, &[cmd(&["PUBLISH", "ch", "over tls"])]).await;
        assert_eq!(next_message(&mut subscription).await, "over tls");
    }
}

#[tokio::test]
async fn tls_refuses_a_certificate_from_an_unknown_ca() {
    let server = RedisServer::start_with(RedisServerOptions {
        password: None,
        tls: true,
    })
    .await;
    // The system CAs do not know the tests' private CA.
    let redis = client(&server.tls_url());
    let result = redis.run(&[cmd(&["PING"])]).await;
    assert!(matches!(result, Err(RedisError::Tls(_))), "{result:?}");
    // Plain RESP to the TLS port is not a Redis reply.
    let plain = client(&server.tls_url().replace("rediss", "redis"));
    assert!(plain.run(&[cmd(&["PING"])]).await.is_err());
}
