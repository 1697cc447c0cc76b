//! Many clients over few backend connections (transaction-mode pooling),
//! at a size a test can afford: the bounded version of `benches/scale.rs`.

mod common;

use std::time::{Duration, Instant};

use common::scale::{self, Tally, Via};
use common::{scalar_i32, Backend, TestClient};

const CLIENTS: usize = 400;
const ACTIVE: usize = 50;
const POOL_SIZE: usize = 4;
const ACTIVE_FOR: Duration = Duration::from_secs(2);
const LOGINS_IN_FLIGHT: usize = 64;

/// 400 clients log in to a Sluice with `pool.max_size = 4` (per backend;
/// transaction mode, whatever mode the rest of the suite runs in); 50 of them run point reads and writes (one in
/// ten a write: UPDATE, INSERT, DELETE) for 2 s while 350 stay idle; then
/// every client runs one more query. Nothing may fail, and every write
/// must have landed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_hundred_clients_share_four_backend_connections() {
    tokio::time::timeout(Duration::from_secs(50), many_clients_few_connections())
        .await
        .expect("the scenario finishes within 50 s");
}

async fn many_clients_few_connections() {
    let primary = Backend::start().await;
    let replica = Backend::start_on(primary.engine.clone()).await;
    scale::seed(&primary);
    let config = common::parse_config(&scale::config_text(
        "127.0.0.1:0",
        primary.addr,
        replica.addr,
        POOL_SIZE,
        // Session mode cannot serve 400 clients over 4 connections.
        Some("transaction"),
        &scale::cheap_password_hash(),
    ));
    let sluice = common::start_sluice(config).await;

    let config = common::tiberius_config(sluice, common::USER, common::PASSWORD);
    let logins = scale::log_in(config, CLIENTS, LOGINS_IN_FLIGHT).await;
    assert_eq!(
        logins.failures, 0,
        "every client logs in; first error: {:?}",
        logins.first_error
    );
    let mut idle = logins.clients;
    let active: Vec<TestClient> = idle.drain(..ACTIVE).collect();

    let until = Instant::now() + ACTIVE_FOR;
    let workers: Vec<_> = active
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(scale::work(Via::Client(Box::new(client)), i as i32, until))
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let (tally, via) = worker.await.expect("worker task");
        assert!(
            tally.requests > 0,
            "every active client is served; first error: {:?}",
            tally.first_error
        );
        total.merge(tally);
        if let Via::Client(client) = via {
            idle.push(*client);
        }
    }
    assert_eq!(
        (total.errors, total.connections_lost),
        (0, 0),
        "no request fails; first error: {:?}",
        total.first_error
    );
    assert!(
        total.updates > 0 && total.inserts > 0,
        "the mix wrote: {} requests",
        total.requests
    );

    let answers = scale::everyone_answers(idle, LOGINS_IN_FLIGHT).await;
    assert_eq!(
        (answers.answered, answers.failed),
        (CLIENTS as u64, 0),
        "every client answers one more query; first error: {:?}",
        answers.first_error
    );

    // Every acknowledged write is on the primary, once.
    let mut check = common::connect_with(common::tiberius_config(primary.addr, "sa", "x"))
        .await
        .expect("direct connection to the primary");
    let logged = scalar_i32(&mut check, "SELECT COUNT(*) FROM dbo.scale_log").await;
    let updated = scalar_i32(&mut check, "SELECT SUM(n) FROM dbo.scale").await;
    assert_eq!(
        logged,
        Some((total.inserts - total.deletes) as i32),
        "inserts less deletes"
    );
    assert_eq!(updated, Some(total.updates as i32), "updates");
}
