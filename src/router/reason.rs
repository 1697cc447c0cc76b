//! Why a request went where it went. A closed set of causes, each with a
//! bounded, snake_case [`Reason::label`] (a metrics label); the human text
//! (`Display`, shown in logs and by `sluice explain`) carries the details,
//! such as a rule's name or the classifier's reason, and is built only
//! when it is displayed, never per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::PinReason;
use crate::classify::{Class, Classification};

/// What made a request eligible for a replica, before a replica is chosen.
#[derive(Debug, Clone)]
pub enum ReplicaGrounds {
    /// `/* sluice:replica */` in the leading comment.
    Hint,
    /// The named `[[routing.rules]]` entry, `target = "replica"`.
    Rule(Arc<str>),
    /// The classifier found a read that may run on a replica.
    Read(Arc<Classification>),
    /// The batch calls procedures that are read-only by their definitions
    /// (`routing.detect_read_only_procedures`), and otherwise only reads.
    DetectedProcedures(Arc<Classification>),
}

impl ReplicaGrounds {
    fn is_detected_procedure(&self) -> bool {
        matches!(self, ReplicaGrounds::DetectedProcedures(_))
    }

    fn label(&self) -> &'static str {
        match self {
            ReplicaGrounds::Hint => "hint",
            ReplicaGrounds::Rule(_) => "rule",
            ReplicaGrounds::Read(_) => "read",
            ReplicaGrounds::DetectedProcedures(_) => "detected_read_only_procedure",
        }
    }
}

impl fmt::Display for ReplicaGrounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaGrounds::Hint => f.write_str("hint sluice:replica"),
            ReplicaGrounds::Rule(name) => write!(f, "rule {name}"),
            ReplicaGrounds::Read(c) => write!(f, "read: {}", c.reason),
            ReplicaGrounds::DetectedProcedures(c) => write!(
                f,
                "read-only procedure (detected from its definition): {}",
                c.unlisted_procedures.join(", ")
            ),
        }
    }
}

/// The reason of a routing [`super::Decision`].
#[derive(Debug, Clone)]
pub enum Reason {
    /// A request only the primary can take (bulk load, Transaction Manager,
    /// a request too large to classify, ...), with what it is.
    PrimaryOnly(&'static str),
    OpenTransaction,
    ImplicitTransactions,
    /// SERIALIZABLE or REPEATABLE READ.
    StrictIsolation,
    Pinned(PinReason),
    /// `/* sluice:primary */` in the leading comment.
    HintPrimary,
    /// The named `[[routing.rules]]` entry, `target = "primary"`.
    RulePrimary(Arc<str>),
    /// A hint or rule asked for a replica, but the statement is not a read
    /// (or leaves pinned state, which lives on the primary).
    NotARead(ReplicaGrounds),
    /// The classifier kept the statement on the primary (a write, a read
    /// that needs the primary, transaction control, unknown, ...).
    Classified(Arc<Classification>),
    NotClassified,
    /// Eligible for a replica, but none is available.
    NoReplicaAvailable(ReplicaGrounds),
    /// Eligible for a replica, but a result cache miss: the entry is
    /// filled from the primary, since a lagging replica's rows would be
    /// served for the entry's whole life.
    CacheFill(ReplicaGrounds),
    /// A read soon after the session's last write.
    ReadYourWrites {
        since_write: Duration,
        replica_lag: Option<Duration>,
    },
    /// Sent to a replica.
    Replica(ReplicaGrounds),
    /// sp_execute or sp_unprepare of a statement prepared on a replica.
    PreparedOnReplica,
    /// A prepare kept on the primary: the replica's handles cannot be read.
    HandleNotFollowable,
    /// A statement prepared on a replica, re-run on the primary as
    /// sp_executesql because a transaction began since.
    ExecutesqlInTransaction,
}

impl Reason {
    /// The request calls procedures the catalog proved read-only (whether
    /// or not a replica took it): the session counts it as a read.
    pub fn detected_read_only(&self) -> bool {
        match self {
            Reason::Replica(grounds)
            | Reason::NoReplicaAvailable(grounds)
            | Reason::CacheFill(grounds) => grounds.is_detected_procedure(),
            _ => false,
        }
    }

    /// A bounded, snake_case name for metrics; the details are in `Display`.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::PrimaryOnly(_) => "primary_only",
            Reason::OpenTransaction => "open_transaction",
            Reason::ImplicitTransactions => "implicit_transactions",
            Reason::StrictIsolation => "strict_isolation",
            Reason::Pinned(_) => "pinned",
            Reason::HintPrimary => "hint",
            Reason::RulePrimary(_) => "rule",
            Reason::NotARead(_) => "not_a_read",
            Reason::Classified(c) => match c.class {
                Class::Read => "read_needs_primary",
                Class::Write => "write",
                Class::TransactionControl => "transaction_control",
                Class::SessionState => "session_state",
                Class::Unknown => "unknown",
            },
            Reason::NotClassified => "not_classified",
            Reason::NoReplicaAvailable(_) => "no_replica_available",
            Reason::CacheFill(_) => "cache_fill",
            Reason::ReadYourWrites { .. } => "read_your_writes",
            Reason::Replica(grounds) => grounds.label(),
            Reason::PreparedOnReplica => "prepared_on_replica",
            Reason::HandleNotFollowable => "handle_not_followable",
            Reason::ExecutesqlInTransaction => "executesql_in_transaction",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::PrimaryOnly(what) => f.write_str(what),
            Reason::OpenTransaction => f.write_str("open transaction"),
            Reason::ImplicitTransactions => f.write_str("IMPLICIT_TRANSACTIONS ON"),
            Reason::StrictIsolation => f.write_str("isolation level needs the primary"),
            Reason::Pinned(pin) => write!(f, "pinned: {}", pin.as_str()),
            Reason::HintPrimary => f.write_str("hint sluice:primary"),
            Reason::RulePrimary(name) => write!(f, "rule {name}"),
            Reason::NotARead(grounds) => write!(f, "{grounds} overridden: not a read"),
            Reason::Classified(c) => write!(f, "{}: {}", c.class.as_str(), c.reason),
            Reason::NotClassified => f.write_str("not classified"),
            Reason::NoReplicaAvailable(grounds) => write!(f, "{grounds}; no replica available"),
            Reason::CacheFill(grounds) => {
                write!(f, "{grounds}; a cache miss, filled from the primary")
            }
            Reason::ReadYourWrites {
                since_write,
                replica_lag,
            } => {
                write!(
                    f,
                    "read-your-writes: last write {} ms ago, replica lag ",
                    since_write.as_millis()
                )?;
                match replica_lag {
                    Some(lag) => write!(f, "{} ms", lag.as_millis()),
                    None => f.write_str("unknown"),
                }
            }
            Reason::Replica(grounds) => grounds.fmt(f),
            Reason::PreparedOnReplica => f.write_str("statement prepared on this replica"),
            Reason::HandleNotFollowable => {
                f.write_str("prepared statement: this replica's handles cannot be followed")
            }
            Reason::ExecutesqlInTransaction => f.write_str(
                "statement prepared on a replica, run as sp_executesql inside the transaction",
            ),
        }
    }
}
