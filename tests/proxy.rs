//! The transparent proxy through tiberius: types, big results, big batches,
//! parameters, transactions and login failures.
mod common;

use common::*;
use tiberius::numeric::Numeric;
use tiberius::Query;

/// Every type iridium encodes correctly, read back through Sluice by
/// tiberius. (iridium mis-encodes money, real, date, time, datetime,
/// datetime2 and datetimeoffset and crashes on (max) types; the byte-identity test below
/// covers those, the token walker's unit tests cover PLP.)
#[tokio::test]
async fn round_trips_common_types_with_nulls() {
    let (primary, sluice) = primary_and_sluice().await;
    primary.exec(
        "CREATE TABLE dbo.types (
            id INT, t TINYINT, s SMALLINT, b BIGINT, bit_col BIT, dec_col DECIMAL(18,4), num_col NUMERIC(10,2),
            f FLOAT, g UNIQUEIDENTIFIER, vc VARCHAR(50), nvc NVARCHAR(50), nvclong NVARCHAR(4000),
            vb VARBINARY(50))",
    );
    primary.exec(
        "INSERT INTO dbo.types VALUES (1, 255, -32768, 9223372036854775807, 1, 12345.6789, 99.95,
            1.5e300, '6F9619FF-8B86-D011-B42D-00C04FC964FF', 'plain', N'ünïcødé',
            REPLICATE(N'ж', 1500), 0xDEADBEEF);
         INSERT INTO dbo.types VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    );
    let mut client = connect(sluice).await;
    let rows = client
        .simple_query("SELECT * FROM dbo.types ORDER BY id")
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let full = &rows[0];
    assert_eq!(full.get::<i32, _>("id"), Some(1));
    assert_eq!(full.get::<u8, _>("t"), Some(255));
    assert_eq!(full.get::<i16, _>("s"), Some(-32768));
    assert_eq!(full.get::<i64, _>("b"), Some(i64::MAX));
    assert_eq!(full.get::<bool, _>("bit_col"), Some(true));
    assert_eq!(
        full.get::<Numeric, _>("dec_col"),
        Some(Numeric::new_with_scale(123456789, 4))
    );
    assert_eq!(
        full.get::<Numeric, _>("num_col"),
        Some(Numeric::new_with_scale(9995, 2))
    );
    assert_eq!(full.get::<f64, _>("f"), Some(1.5e300));
    assert_eq!(
        full.get::<tiberius::Uuid, _>("g")
            .map(|g| g.to_string().to_uppercase()),
        Some("6F9619FF-8B86-D011-B42D-00C04FC964FF".into())
    );
    assert_eq!(full.get::<&str, _>("vc"), Some("plain"));
    assert_eq!(full.get::<&str, _>("nvc"), Some("ünïcødé"));
    assert_eq!(
        full.get::<&str, _>("nvclong").map(|s| s.chars().count()),
        Some(1500)
    );
    assert_eq!(
        full.get::<&[u8], _>("vb"),
        Some(&[0xDE, 0xAD, 0xBE, 0xEF][..])
    );
    let nulls = &rows[1];
    for column in 1..nulls.len() {
        assert!(is_null(nulls, column), "column {column} should be NULL");
    }
}

/// Sluice forwards token streams untouched: for every type, including those
/// iridium encodes in ways tiberius rejects, the response through Sluice is
/// byte for byte the one a direct connection gets.
#[tokio::test]
async fn responses_are_byte_identical_to_a_direct_connection() {
    let (primary, sluice) = primary_and_sluice().await;
    primary.exec(
        "CREATE TABLE dbo.wide (m MONEY, sm SMALLMONEY, r REAL, d DATE, tm TIME, dt2 DATETIME2, dto DATETIMEOFFSET,
            dt DATETIME, i INT, n NVARCHAR(20));
         INSERT INTO dbo.wide VALUES (12.5, 3.25, 1.5, '2024-02-29', '23:59:59', '2020-05-06 07:08:09',
            '2020-05-06 07:08:09', '2001-01-01 12:34:56', 7, N'x');
         INSERT INTO dbo.wide VALUES (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    );
    let mut direct = common::raw::RawClient::login(primary.addr, "sa", "x").await;
    let mut proxied = common::raw::RawClient::login(sluice, USER, PASSWORD).await;
    for sql in [
        "SELECT * FROM dbo.wide",
        "SELECT m, sm FROM dbo.wide WHERE i = 7",
        "SELECT d, tm, dt, dt2, dto FROM dbo.wide",
        "SELECT COUNT(*) AS c FROM dbo.wide",
        "SELECT * FROM dbo.no_such_table",
    ] {
        direct.send_batch(sql).await;
        proxied.send_batch(sql).await;
        let want = direct.read_message().await;
        let got = proxied.read_message().await;
        assert_eq!(got, want, "response to {sql:?} differs through Sluice");
    }
}

fn is_null(row: &tiberius::Row, i: usize) -> bool {
    row.cells()
        .nth(i)
        .map(|(_, v)| is_null_value(v))
        .unwrap_or(false)
}

fn is_null_value(v: &tiberius::ColumnData<'_>) -> bool {
    use tiberius::ColumnData::*;
    match v {
        U8(x) => x.is_none(),
        I16(x) => x.is_none(),
        I32(x) => x.is_none(),
        I64(x) => x.is_none(),
        F32(x) => x.is_none(),
        F64(x) => x.is_none(),
        Bit(x) => x.is_none(),
        String(x) => x.is_none(),
        Guid(x) => x.is_none(),
        Binary(x) => x.is_none(),
        Numeric(x) => x.is_none(),
        Xml(x) => x.is_none(),
        DateTime(x) => x.is_none(),
        SmallDateTime(x) => x.is_none(),
        Time(x) => x.is_none(),
        Date(x) => x.is_none(),
        DateTime2(x) => x.is_none(),
        DateTimeOffset(x) => x.is_none(),
    }
}

#[tokio::test]
async fn streams_a_hundred_thousand_rows() {
    let (primary, sluice) = primary_and_sluice().await;
    primary.exec("CREATE TABLE dbo.digits (d INT); INSERT INTO dbo.digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);");
    let mut client = connect(sluice).await;
    let rows = client
        .simple_query(
            "SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d AS n, N'row payload' AS label
             FROM dbo.digits a CROSS JOIN dbo.digits b CROSS JOIN dbo.digits c
             CROSS JOIN dbo.digits e CROSS JOIN dbo.digits f",
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 100_000);
    let mut seen: Vec<i32> = rows.iter().map(|r| r.get::<i32, _>(0).unwrap()).collect();
    seen.sort_unstable();
    assert!(seen.iter().enumerate().all(|(i, &n)| n == i as i32));
}

/// Wide rows, whose values the 4 KB packet boundaries cut at ever other
/// offsets (the walker skips what is left of a row cut after its last
/// length prefix): every value arrives whole, and the end of the response
/// is found, as the next query on the connection shows.
#[tokio::test]
async fn wide_rows_cut_by_packet_boundaries_arrive_whole() {
    let (primary, sluice) = primary_and_sluice().await;
    primary.exec(
        "CREATE TABLE dbo.digits (d INT);
         INSERT INTO dbo.digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);",
    );
    let mut client = connect(sluice).await;
    let rows = client
        .simple_query(
            "SELECT n, CASE WHEN n % 17 = 0 THEN NULL
                            ELSE CAST(REPLICATE(N'w', 300 + n % 700) AS NVARCHAR(1000)) END AS pad
             FROM (SELECT a.d + 10*b.d + 100*c.d AS n
                   FROM dbo.digits a CROSS JOIN dbo.digits b CROSS JOIN dbo.digits c) AS t
             ORDER BY n",
        )
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap();
    assert_eq!(rows.len(), 1000);
    for (i, row) in rows.iter().enumerate() {
        let n = row.get::<i32, _>("n").unwrap();
        assert_eq!(n, i as i32);
        let pad = row.get::<&str, _>("pad");
        if n % 17 == 0 {
            assert_eq!(pad, None, "row {n}");
        } else {
            let pad = pad.unwrap_or_else(|| panic!("row {n}: NULL"));
            assert_eq!(pad.len(), 300 + (n % 700) as usize, "row {n}");
            assert!(pad.bytes().all(|b| b == b'w'), "row {n}");
        }
    }
    assert_eq!(scalar_i32(&mut client, "SELECT 7").await, Some(7));
}

#[tokio::test]
async fn forwards_a_batch_larger_than_the_packet_size() {
    let (_primary, sluice) = primary_and_sluice().await;
    let mut client = connect(sluice).await;
    // ~20 KB of SQL text: five 4 KB packets from the client.
    let literal = "x".repeat(10_000);
    let sql = format!("SELECT LEN('{literal}') AS n /* {} */", "pad ".repeat(100));
    assert_eq!(scalar_i32(&mut client, &sql).await, Some(10_000));
}

#[tokio::test]
async fn runs_parameterised_queries() {
    let (primary, sluice) = primary_and_sluice().await;
    primary.exec("CREATE TABLE dbo.people (id INT, name NVARCHAR(50)); INSERT INTO dbo.people VALUES (1, N'Ada'), (2, N'Grace');");
    let mut client = connect(sluice).await;
    let row = client
        .query("SELECT name FROM dbo.people WHERE id = @P1", &[&2i32])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<&str, _>(0), Some("Grace"));
    let mut query = Query::new("SELECT @P1 + 1 AS n, @P2 AS s");
    query.bind(41i32);
    query.bind("text");
    let row = query
        .query(&mut client)
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(42));
    assert_eq!(row.get::<&str, _>(1), Some("text"));
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let (primary, sluice) = primary_and_sluice().await;
    primary.exec("CREATE TABLE dbo.ledger (id INT)");
    let mut client = connect(sluice).await;
    client
        .simple_query("BEGIN TRAN; INSERT INTO dbo.ledger VALUES (1);")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client
        .simple_query("COMMIT")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client
        .simple_query("BEGIN TRAN; INSERT INTO dbo.ledger VALUES (2);")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client
        .simple_query("ROLLBACK")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    assert_eq!(
        scalar_i32(&mut client, "SELECT COUNT(*) FROM dbo.ledger").await,
        Some(1)
    );
    assert_eq!(
        scalar_i32(&mut client, "SELECT MAX(id) FROM dbo.ledger").await,
        Some(1)
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_login_failed() {
    let (_primary, sluice) = primary_and_sluice().await;
    for (user, password) in [(USER, "wrong"), ("nobody", PASSWORD)] {
        let err = login_error(tiberius_config(sluice, user, password)).await;
        match err {
            tiberius::error::Error::Server(token) => {
                assert_eq!(token.code(), 18456);
                assert_eq!(token.class(), 14);
                assert_eq!(token.message(), format!("Login failed for user '{user}'."));
            }
            other => panic!("expected a server error, got {other:?}"),
        }
    }
}

/// The client learns which backend is down by its configured name; the
/// backend's host, port and Sluice's login stay in Sluice's log.
#[tokio::test]
async fn unreachable_backend_is_named_but_its_address_is_not_shown() {
    // A port that was just free: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sluice = start_sluice(parse_config(&config_text(closed, &[]))).await;
    let started = std::time::Instant::now();
    let err = login_error(tiberius_config(sluice, USER, PASSWORD)).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let tiberius::error::Error::Server(token) = &err else {
        panic!("expected a server error, got {err:?}");
    };
    assert_eq!(token.code(), 40613);
    let text = token.message();
    assert!(text.contains("backend primary"), "{text}");
    for secret in [
        closed.to_string(),
        closed.port().to_string(),
        closed.ip().to_string(),
        "\"sa\"".into(),
        "'sa'".into(),
        "os error".into(),
    ] {
        assert!(
            !text.contains(&secret),
            "{secret} shown to the client: {text}"
        );
    }
}

/// A backend that refuses Sluice's own login with 18456 names Sluice's
/// backend login in its message; the client gets the error number with a
/// message that names the backend instead.
#[tokio::test]
async fn a_refused_backend_login_does_not_show_sluices_login_name() {
    let backend = refusing_backend(
        18456,
        "Login failed for user 'sluice_svc'. Reason: Password did not match.",
    )
    .await;
    let text = config_text(backend, &[]).replace("user = \"sa\"", "user = \"sluice_svc\"");
    let sluice = start_sluice(parse_config(&text)).await;
    let err = login_error(tiberius_config(sluice, USER, PASSWORD)).await;
    let tiberius::error::Error::Server(token) = &err else {
        panic!("expected a server error, got {err:?}");
    };
    assert_eq!(token.code(), 18456);
    let message = token.message();
    assert!(
        message.contains("backend primary") && !message.contains("sluice_svc"),
        "{message}"
    );
    // Any other refusal is forwarded as the backend wrote it.
    let why = "Cannot open database \"nope\" requested by the login. The login failed.";
    let backend = refusing_backend(4060, why).await;
    let sluice = start_sluice(parse_config(&config_text(backend, &[]))).await;
    let err = login_error(tiberius_config(sluice, USER, PASSWORD)).await;
    let tiberius::error::Error::Server(token) = &err else {
        panic!("expected a server error, got {err:?}");
    };
    assert_eq!((token.code(), token.message()), (4060, why));
}

/// A TDS server that answers PRELOGIN (no encryption) and refuses every
/// LOGIN7 with one ERROR token.
async fn refusing_backend(number: u32, message: &'static str) -> std::net::SocketAddr {
    use sluice::tds::packet::{encode_message, PacketType, Status};
    use sluice::tds::prelogin::{encryption, PreLogin};
    use sluice::tds::token::done::{Done, DoneKind, DoneStatus};
    use sluice::tds::token::message::ServerMessage;
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = tcp.into_split();
                let mut reader = sluice::transport::PacketReader::new(read);
                let kinds = [PacketType::PRELOGIN, PacketType::LOGIN7];
                while let Ok((header, _)) = reader.read_message(&kinds, 1 << 20).await {
                    let mut reply = Vec::new();
                    if header.ty == PacketType::PRELOGIN {
                        PreLogin {
                            encryption: Some(encryption::NOT_SUP),
                            ..PreLogin::default()
                        }
                        .encode(&mut reply);
                    } else {
                        ServerMessage {
                            number,
                            state: 1,
                            class: 14,
                            message: message.into(),
                            server: "fake".into(),
                            procedure: String::new(),
                            line: 0,
                        }
                        .encode_error(&mut reply);
                        Done {
                            kind: DoneKind::Done,
                            status: DoneStatus::ERROR,
                            cur_cmd: 0,
                            row_count: 0,
                        }
                        .encode(&mut reply);
                    }
                    let mut out = Vec::new();
                    encode_message(
                        &mut out,
                        PacketType::TABULAR_RESULT,
                        Status::NORMAL,
                        0,
                        &reply,
                        4096,
                    );
                    if write.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn login_error(config: tiberius::Config) -> tiberius::error::Error {
    match connect_with(config).await {
        Ok(_) => panic!("login must fail"),
        Err(e) => e,
    }
}

/// Transaction Manager requests (what tedious, pytds and ODBC send) against
/// a backend configured with `transaction_requests = "emulate"`.
#[tokio::test]
async fn transaction_manager_requests_begin_commit_and_roll_back() {
    use sluice::tds::token::env_change::EnvChange;
    use sluice::tds::token::walker::TokenEvent;
    let (primary, sluice) = primary_and_sluice().await;
    primary.exec("CREATE TABLE dbo.tm (id INT)");
    let mut client = common::raw::RawClient::login(sluice, USER, PASSWORD).await;
    // TM_BEGIN_XACT (5): isolation level "no change", no name.
    client.send_tm(0, 5, &[0, 0]).await;
    let events = client.read_response().await;
    let descriptor = match events.first() {
        Some(TokenEvent::EnvChange(EnvChange::BeginTransaction { descriptor })) => *descriptor,
        other => panic!("expected a begin-transaction ENVCHANGE, got {other:?}"),
    };
    client.send_batch("INSERT INTO dbo.tm VALUES (1)").await;
    client.read_response().await;
    // TM_ROLLBACK_XACT (8): no name, no new transaction.
    client.send_tm(descriptor, 8, &[0, 0]).await;
    let events = client.read_response().await;
    assert!(
        matches!(events.first(), Some(TokenEvent::EnvChange(EnvChange::RollbackTransaction { descriptor: d })) if *d == descriptor),
        "{events:?}"
    );
    client.send_tm(0, 5, &[0, 0]).await;
    client.read_response().await;
    client.send_batch("INSERT INTO dbo.tm VALUES (2)").await;
    client.read_response().await;
    // TM_COMMIT_XACT (7).
    client.send_tm(descriptor + 1, 7, &[0, 0]).await;
    let events = client.read_response().await;
    assert!(
        matches!(
            events.first(),
            Some(TokenEvent::EnvChange(EnvChange::CommitTransaction { .. }))
        ),
        "{events:?}"
    );
    let mut check = connect(sluice).await;
    assert_eq!(
        scalar_i32(&mut check, "SELECT COUNT(*) FROM dbo.tm").await,
        Some(1)
    );
    assert_eq!(
        scalar_i32(&mut check, "SELECT MAX(id) FROM dbo.tm").await,
        Some(2)
    );
    // Distributed transactions cannot be emulated: a clear error, the connection stays.
    client.send_tm(0, 6, &[]).await;
    let events = client.read_response().await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TokenEvent::Error(m) if m.message.contains("TM_PROMOTE_XACT"))),
        "{events:?}"
    );
    client.send_batch("SELECT 1").await;
    assert!(!client
        .read_response()
        .await
        .iter()
        .any(|e| matches!(e, TokenEvent::Error(_))));
}
