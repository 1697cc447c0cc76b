//! Shadow mode on the session's side (the runner is [`crate::shadow`]):
//! a decision for a replica becomes one for the primary, counted; a
//! sampled plain read is queued for its replica before it runs on the
//! primary, whose rows are digested as they are relayed, and the primary's
//! answer goes to the shadow run once the client has it.

use super::request::RequestHead;
use super::{Served, Session, SessionError};
use crate::router::{Decision, Target};
use crate::shadow::{PrimaryAnswer, ShadowRead};
use crate::transport::Request;

/// The shadow state of the request in flight.
#[derive(Debug, Default)]
pub(super) struct ShadowTurn {
    /// The replica the router chose for it, before shadow mode sent it to
    /// the primary.
    would_route: Option<usize>,
    /// Its response is digested as it is relayed.
    pub(super) digest: bool,
}

impl Session {
    /// In shadow mode, sends a request bound for a replica to the primary
    /// and counts it. Called for every routing decision.
    pub(super) fn shadow_override(&mut self, decision: &mut Decision) {
        self.shadow.would_route = None;
        let Some(runner) = &self.ctx.shadow else {
            return;
        };
        if let Target::Replica(index) = decision.target {
            runner.would_route(decision.reason.label());
            self.shadow.would_route = Some(index);
            decision.target = Target::Primary;
        }
    }

    /// Queues a shadow copy of the request when it is a plain read (a SQL
    /// batch, sp_executesql, or a procedure call, that the classifier by
    /// itself finds fit for a replica) the router would have sent to a
    /// replica, outside any transaction or pin, and in the sample. The response on the primary
    /// is then digested; its answer goes to the returned handle.
    pub(super) fn shadow_probe(
        &mut self,
        head: RequestHead,
        decision: &Decision,
        request: &Request,
    ) -> Option<PrimaryAnswer> {
        let runner = self.ctx.shadow.clone()?;
        let index = self.shadow.would_route.take()?;
        let statement = match head {
            RequestHead::Sql(sql) | RequestHead::ExecuteSql(sql) => sql,
            RequestHead::Procedure(name) => format!("EXEC {name}"),
            _ => return None,
        };
        // What the classifier alone would send to a replica: a hint or a
        // rule may direct a read with a locking hint or a sequence there in
        // split mode, but a shadow copy must not take locks or write.
        let plain_read = decision
            .classification
            .as_ref()
            .is_some_and(|c| c.replica_eligible());
        if !plain_read || self.view().holds_primary() || !runner.sampled() {
            return None;
        }
        let read = ShadowRead {
            replica: self.ctx.cluster.replica(index)?.clone(),
            database: &self.login_database,
            login: self.identity.backend_login.clone(),
            settings: self.settings_due(),
            request,
            statement,
        };
        let answer = runner.submit(read)?;
        self.shadow.digest = true;
        Some(answer)
    }

    /// After the request: the primary's answer to the shadow run, if any.
    pub(super) fn shadow_report(
        &mut self,
        probe: Option<PrimaryAnswer>,
        served: &Result<Option<Served>, SessionError>,
    ) {
        self.shadow.digest = false;
        if let Some(probe) = probe {
            let summary = match served {
                Ok(Some(served)) => Some(&served.summary),
                _ => None,
            };
            probe.send(summary);
        }
    }
}
