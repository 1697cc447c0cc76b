//! Health checks and replica lag: one background task per backend keeps a
//! [`BackendHealth`] that the router reads, lock-free, on every request.
//!
//! Each task owns a tiberius connection to its backend (reopened after any
//! failure) and, every `interval`, runs `SELECT 1` within `timeout`; for a
//! replica it then measures the lag from its [`LagSource`] (within `timeout`
//! again). The result feeds a pure [`StateMachine`]:
//!
//! | from | to | when |
//! |---|---|---|
//! | up | lagging | a check's lag is over `max_lag`, or unknown while `max_lag` is set |
//! | up, lagging | down | `failures_to_down` consecutive failed checks |
//! | down | lagging | a check passes, but the lag is not at or under `max_lag - lag_margin` |
//! | lagging, down | up | every check passes (lag at or under `max_lag - lag_margin`) for `recovery` |
//!
//! Each change is logged once: warn when a backend gets worse, info when it
//! gets better, with the reason.
//!
//! A lag query that fails does not make a backend down (a missing
//! permission is not an outage): the lag is unknown, which, with a lag
//! limit, counts as over it. Sources read on the primary (`azure_geo`, the
//! heartbeat) stop the lag from growing while the primary is unreachable,
//! so a primary outage leaves the replicas serving reads.
mod health;
mod lag;
mod state_machine;
mod target;
mod task;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

pub use health::{BackendHealth, BackendState};
pub use lag::{
    LagSource, ALWAYS_ON_SQL, AZURE_GEO_SQL, AZURE_READ_SCALE_OUT_SQL, HEALTH_CHECK_SQL,
};
pub use state_machine::{CheckResult, HealthPolicy, StateMachine, Transition};
pub use target::{CheckError, CheckTarget};

use lag::HeartbeatTable;
pub(crate) use task::AbortOnDrop;
use task::{BackendTask, HeartbeatClock, HeartbeatWriter, LagProbe};

/// Checks that a heartbeat table name can be used (`table` or
/// `schema.table`, regular identifiers or `[bracketed]`), for configuration
/// loading: the error says what is wrong.
pub fn check_heartbeat_table(name: &str) -> Result<(), String> {
    HeartbeatTable::parse(name).map(|_| ())
}

/// The running monitor tasks; dropping it stops them all.
pub struct MonitorHandle {
    tasks: Vec<AbortOnDrop<()>>,
}

impl MonitorHandle {
    /// Number of background tasks (backends plus heartbeat writers).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
}

impl std::fmt::Debug for MonitorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MonitorHandle({} tasks)", self.tasks.len())
    }
}

/// Starts monitoring: a task for the primary, one per replica, and one
/// heartbeat writer on the primary per distinct heartbeat table (at the
/// primary's interval and timeout). Must be called inside a tokio runtime.
pub fn spawn(
    primary: (CheckTarget, Arc<BackendHealth>, HealthPolicy),
    replicas: Vec<(CheckTarget, Arc<BackendHealth>, HealthPolicy, LagSource)>,
) -> MonitorHandle {
    let (primary_target, primary_health, primary_policy) = primary;
    let primary_target = Arc::new(primary_target);
    let mut tasks = Vec::new();
    let mut writers: HashMap<HeartbeatTable, Arc<HeartbeatClock>> = HashMap::new();

    for (target, health, policy, source) in replicas {
        let probe = match source {
            LagSource::None => LagProbe::None,
            LagSource::AzureReadScaleOut => LagProbe::OnReplica {
                sql: AZURE_READ_SCALE_OUT_SQL.to_string(),
            },
            LagSource::AlwaysOn => LagProbe::OnReplica {
                sql: ALWAYS_ON_SQL.to_string(),
            },
            LagSource::Query(sql) => LagProbe::OnReplica { sql },
            LagSource::AzureGeo => LagProbe::OnPrimary {
                target: primary_target.clone(),
                sql: AZURE_GEO_SQL,
                conn: None,
                last: None,
            },
            LagSource::Heartbeat { table } => match HeartbeatTable::parse(&table) {
                Ok(table) => {
                    let read_sql = table.read_sql();
                    let clock = writers
                        .entry(table.clone())
                        .or_insert_with(|| {
                            let clock = Arc::new(HeartbeatClock::new());
                            let writer = HeartbeatWriter {
                                target: primary_target.clone(),
                                table,
                                interval: primary_policy.interval,
                                timeout: primary_policy.timeout,
                                clock: clock.clone(),
                            };
                            tasks.push(AbortOnDrop(tokio::spawn(writer.run())));
                            clock
                        })
                        .clone();
                    LagProbe::Heartbeat { read_sql, clock }
                }
                Err(e) => {
                    tracing::error!(backend = %target.name, problem = %e, "heartbeat lag source unusable");
                    LagProbe::Invalid(e)
                }
            },
        };
        let task = BackendTask::new(Arc::new(target), health, policy, probe);
        tasks.push(AbortOnDrop(tokio::spawn(task.run())));
    }

    let task = BackendTask::new(
        primary_target,
        primary_health,
        primary_policy,
        LagProbe::None,
    );
    tasks.push(AbortOnDrop(tokio::spawn(task.run())));
    MonitorHandle { tasks }
}
