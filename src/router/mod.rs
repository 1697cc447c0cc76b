//! Routing policy: a pure function from (request, client session state,
//! replica state, configuration) to a [`Target`] and a [`Reason`]. No I/O: the
//! session, the `explain` command and tests all call the same function.
//!
//! Order of precedence, first match wins:
//! 1. requests that only the primary can take (Transaction Manager, bulk
//!    load, requests too large to classify);
//! 2. an open transaction, implicit transactions, a strict isolation level,
//!    a pin (temp table, cursor, session lock, ...);
//! 3. a hint in a leading comment: `/* sluice:primary */`, `/* sluice:replica */`;
//! 4. the ordered `[[routing.rules]]`;
//! 5. the classifier; then read-your-writes.
//!
//! Whatever the hint or rule says, a request the classifier found to write
//! is never sent to a replica.

mod reason;
pub mod rules;

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a session is held on its primary connection (defined with the
/// classifier, which reports where pins start and end).
pub use crate::classify::PinReason;
use crate::classify::{Class, Classification, Classifier};
pub use reason::{Reason, ReplicaGrounds};
pub use rules::{Rule, RuleAction, RuleError};

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
    /// Index into the configured replicas.
    Replica(usize),
}

impl Target {
    pub fn is_replica(self) -> bool {
        matches!(self, Target::Replica(_))
    }
}

/// What the request is, as far as routing cares.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// SQL batch text, or the SQL text parameter of sp_executesql,
    /// sp_prepexec, sp_prepare.
    Sql(&'a str),
    /// An RPC to a named procedure (not one of the SQL-text procedures).
    Procedure(&'a str),
    /// A request only the primary may take, with the reason.
    PrimaryOnly(&'static str),
}

/// The client session, as routing sees it.
#[derive(Debug, Clone, Default)]
pub struct SessionView<'a> {
    pub user: &'a str,
    pub application: &'a str,
    pub database: &'a str,
    pub in_transaction: bool,
    pub implicit_transactions: bool,
    /// SERIALIZABLE or REPEATABLE READ: reads must see the primary's locks.
    pub strict_isolation: bool,
    /// The session holds pinned state on its primary connection: the
    /// reason of the oldest active pin.
    pub pin: Option<PinReason>,
    pub last_write: Option<Instant>,
    /// The replica this session already holds a connection to: it keeps
    /// reading there while that replica is available (its settings and
    /// prepared statements are there).
    pub current_replica: Option<usize>,
    /// The procedure catalog's verdicts for `database`, when
    /// `routing.detect_read_only_procedures` is on and they are known.
    pub procedures: Option<&'a crate::catalog::DatabaseProcedures>,
}

impl SessionView<'_> {
    /// Reasons that keep every request of the session on the primary.
    pub fn holds_primary(&self) -> bool {
        self.in_transaction
            || self.implicit_transactions
            || self.strict_isolation
            || self.pin.is_some()
    }
}

/// A replica's routing-relevant state.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaView {
    pub available: bool,
    pub weight: u32,
    pub outstanding: u32,
    /// Measured lag, when known (used by read-your-writes).
    pub lag: Option<Duration>,
}

/// The router's answer.
#[derive(Debug, Clone)]
pub struct Decision {
    pub target: Target,
    pub reason: Reason,
    pub classification: Option<Arc<Classification>>,
}

impl Decision {
    /// This decision with a replica read sent to the primary instead, to
    /// fill the result cache with rows no replica lag can have aged.
    pub fn filling_the_cache(self) -> Decision {
        match self.reason {
            Reason::Replica(grounds) => Decision {
                target: Target::Primary,
                reason: Reason::CacheFill(grounds),
                classification: self.classification,
            },
            _ => self,
        }
    }
}

/// Routing configuration, compiled.
pub struct Router {
    classifier: Classifier,
    rules: Vec<Rule>,
    read_your_writes: Duration,
}

impl Router {
    pub fn new(classifier: Classifier, rules: Vec<Rule>, read_your_writes: Duration) -> Self {
        Router {
            classifier,
            rules,
            read_your_writes,
        }
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    pub fn route(
        &self,
        request: Request<'_>,
        session: &SessionView<'_>,
        replicas: &[ReplicaView],
        now: Instant,
    ) -> Decision {
        let classification = match request {
            Request::Sql(sql) => Some(self.classifier.classify(sql)),
            // An RPC by name is classified as the EXEC it stands for, so the
            // read-only procedure list applies to both.
            Request::Procedure(name) => Some(self.classifier.classify(&format!("EXEC {name}"))),
            Request::PrimaryOnly(_) => None,
        };
        let primary = |reason: Reason| Decision {
            target: Target::Primary,
            reason,
            classification: classification.clone(),
        };
        if let Some(reason) = session_holds_primary(request, session) {
            return primary(reason);
        }
        let directed = match hint(request) {
            Some(RuleAction::Primary) => return primary(Reason::HintPrimary),
            Some(RuleAction::Replica) => Some(ReplicaGrounds::Hint),
            None => match self.rule_for(request, session) {
                Some(rule) if rule.action == RuleAction::Primary => {
                    return primary(Reason::RulePrimary(rule.name.clone()))
                }
                Some(rule) => Some(ReplicaGrounds::Rule(rule.name.clone())),
                None => None,
            },
        };
        // Hints and rules may send reads the classifier doubts (a procedure,
        // a read with a session function) to a replica, never a statement it
        // did not find to be a read, nor one that leaves pinned state (the
        // session keeps its pins on the primary).
        let not_a_read = classification.as_ref().is_some_and(|c| {
            (matches!(request, Request::Sql(_)) && c.class != Class::Read) || c.starts_pin()
        });
        let grounds = match (directed, &classification) {
            (Some(grounds), _) if not_a_read => return primary(Reason::NotARead(grounds)),
            (Some(grounds), _) => grounds,
            (None, Some(c)) if c.replica_eligible() => ReplicaGrounds::Read(c.clone()),
            (None, Some(c)) if detected_read_only(c, session) => {
                ReplicaGrounds::DetectedProcedures(c.clone())
            }
            (None, Some(c)) => return primary(Reason::Classified(c.clone())),
            (None, None) => return primary(Reason::NotClassified),
        };
        let sticky = session
            .current_replica
            .filter(|&i| replicas.get(i).is_some_and(|r| r.available && r.weight > 0));
        let Some(index) = sticky.or_else(|| pick_replica(replicas)) else {
            return primary(Reason::NoReplicaAvailable(grounds));
        };
        if let Some(why) = self.read_your_writes_hold(session, now, replicas[index].lag) {
            return primary(why);
        }
        Decision {
            target: Target::Replica(index),
            reason: Reason::Replica(grounds),
            classification,
        }
    }

    fn rule_for(&self, request: Request<'_>, session: &SessionView<'_>) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.matches(request, session))
    }

    /// After a write, reads stay on the primary until the chosen replica's
    /// measured lag is shorter than the time since that write, and at most
    /// for the configured window (an unknown lag waits out the window).
    fn read_your_writes_hold(
        &self,
        session: &SessionView<'_>,
        now: Instant,
        lag: Option<Duration>,
    ) -> Option<Reason> {
        let since = now.saturating_duration_since(session.last_write?);
        if since >= self.read_your_writes || lag.is_some_and(|lag| lag < since) {
            return None;
        }
        Some(Reason::ReadYourWrites {
            since_write: since,
            replica_lag: lag,
        })
    }
}

/// The batch's only writes are calls of procedures the catalog proved
/// read-only (in the session's database).
fn detected_read_only(c: &Classification, session: &SessionView<'_>) -> bool {
    let Some(procedures) = session.procedures else {
        return false;
    };
    let read_only = c.replica_eligible_with(|name| procedures.is_read_only(session.database, name));
    if !c.unlisted_procedures.is_empty() {
        let verdict = if read_only {
            "detected_read_only"
        } else {
            "not_read_only"
        };
        metrics::counter!(crate::metrics::PROCEDURE_CALLS, "verdict" => verdict).increment(1);
    }
    read_only
}

/// Session state that keeps every request on the primary.
fn session_holds_primary(request: Request<'_>, session: &SessionView<'_>) -> Option<Reason> {
    if let Request::PrimaryOnly(what) = request {
        return Some(Reason::PrimaryOnly(what));
    }
    if session.in_transaction {
        return Some(Reason::OpenTransaction);
    }
    if session.implicit_transactions {
        return Some(Reason::ImplicitTransactions);
    }
    if session.strict_isolation {
        return Some(Reason::StrictIsolation);
    }
    session.pin.map(Reason::Pinned)
}

/// A routing hint in the statement's leading comment.
fn hint(request: Request<'_>) -> Option<RuleAction> {
    let Request::Sql(sql) = request else {
        return None;
    };
    let comment = leading_comment(sql)?;
    if comment.contains("sluice:primary") {
        Some(RuleAction::Primary)
    } else if comment.contains("sluice:replica") {
        Some(RuleAction::Replica)
    } else {
        None
    }
}

/// The text of the first `/* ... */` or `-- ...` comment, if the statement
/// starts with one (after whitespace).
fn leading_comment(sql: &str) -> Option<&str> {
    let s = sql.trim_start();
    if let Some(rest) = s.strip_prefix("/*") {
        return rest.find("*/").map(|end| &rest[..end]);
    }
    s.strip_prefix("--")
        .map(|rest| rest.lines().next().unwrap_or(""))
}

/// The available replica with the fewest outstanding requests per unit of
/// weight; ties go to the first configured.
fn pick_replica(replicas: &[ReplicaView]) -> Option<usize> {
    replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| r.available && r.weight > 0)
        .min_by(|(_, a), (_, b)| {
            let load_a = u64::from(a.outstanding) * u64::from(b.weight);
            let load_b = u64::from(b.outstanding) * u64::from(a.weight);
            load_a.cmp(&load_b)
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests;
