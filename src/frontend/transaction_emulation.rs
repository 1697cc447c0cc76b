//! Transaction Manager requests (packet type 0x0E) for backends that do not
//! implement them [MS-TDS 2.2.6.9]: `transaction_requests = "emulate"`.
//!
//! Drivers such as tedious, pytds and ODBC begin, commit and roll back
//! transactions with these requests instead of T-SQL. Some TDS servers
//! never answer them. For such a backend Sluice runs the equivalent T-SQL
//! and answers the client the way SQL Server does: the transaction
//! ENVCHANGEs (begin 8, commit 9, rollback 10) carrying a descriptor, then
//! DONE.

use crate::tds::request::{isolation_level, BeginXact, TmRequest};
use crate::tds::token::done::{Done, DoneKind, DoneStatus};
use crate::tds::token::env_change::EnvChange;

/// Why a Transaction Manager request cannot be emulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Transaction Manager request {0} (distributed transactions) is not supported by this backend"
)]
pub struct Unsupported(pub &'static str);

/// The T-SQL that does what `request` asks.
pub fn to_sql(request: &TmRequest) -> Result<String, Unsupported> {
    match request {
        TmRequest::BeginXact(begin) => Ok(begin_sql(begin)),
        TmRequest::CommitXact { name, begin } => {
            Ok(end_sql("COMMIT TRANSACTION", name, begin.as_ref()))
        }
        TmRequest::RollbackXact { name, begin } => {
            Ok(end_sql("ROLLBACK TRANSACTION", name, begin.as_ref()))
        }
        TmRequest::SaveXact { name } => Ok(format!("SAVE TRANSACTION {}", quote_name(name))),
        TmRequest::GetDtcAddress => Err(Unsupported("TM_GET_DTC_ADDRESS")),
        TmRequest::PropagateXact { .. } => Err(Unsupported("TM_PROPAGATE_XACT")),
        TmRequest::PromoteXact => Err(Unsupported("TM_PROMOTE_XACT")),
    }
}

fn begin_sql(begin: &BeginXact) -> String {
    let mut sql = String::new();
    if let Some(level) = isolation_name(begin.isolation_level) {
        sql.push_str(&format!("SET TRANSACTION ISOLATION LEVEL {level}; "));
    }
    sql.push_str("BEGIN TRANSACTION");
    if !begin.name.is_empty() {
        sql.push(' ');
        sql.push_str(&quote_name(&begin.name));
    }
    sql
}

/// COMMIT/ROLLBACK, then a new transaction when the request asks for one
/// (fBeginXact). A named rollback goes back to that savepoint.
fn end_sql(verb: &str, name: &str, begin: Option<&BeginXact>) -> String {
    let mut sql = verb.to_string();
    if !name.is_empty() {
        sql.push(' ');
        sql.push_str(&quote_name(name));
    }
    if let Some(begin) = begin {
        sql.push_str("; ");
        sql.push_str(&begin_sql(begin));
    }
    sql
}

fn isolation_name(level: u8) -> Option<&'static str> {
    match level {
        isolation_level::READ_UNCOMMITTED => Some("READ UNCOMMITTED"),
        isolation_level::READ_COMMITTED => Some("READ COMMITTED"),
        isolation_level::REPEATABLE_READ => Some("REPEATABLE READ"),
        isolation_level::SERIALIZABLE => Some("SERIALIZABLE"),
        isolation_level::SNAPSHOT => Some("SNAPSHOT"),
        _ => None,
    }
}

/// A bracket-quoted identifier; `]` doubles, so a name cannot end the quote.
fn quote_name(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// The descriptor of the emulated transaction a client has open, if any.
#[derive(Debug, Default)]
pub struct EmulatedTransaction {
    open: Option<u64>,
    next: u64,
}

impl EmulatedTransaction {
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The reply SQL Server would send once `request` succeeded.
    pub fn reply(&mut self, request: &TmRequest) -> Vec<u8> {
        let mut out = Vec::new();
        match request {
            TmRequest::BeginXact(_) => self.begin(&mut out),
            TmRequest::CommitXact { begin, .. } => {
                self.end(&mut out, |descriptor| EnvChange::CommitTransaction {
                    descriptor,
                });
                if begin.is_some() {
                    self.begin(&mut out);
                }
            }
            TmRequest::RollbackXact { name, begin } if name.is_empty() => {
                self.end(&mut out, |descriptor| EnvChange::RollbackTransaction {
                    descriptor,
                });
                if begin.is_some() {
                    self.begin(&mut out);
                }
            }
            // A savepoint, or a rollback to one: the transaction stays open.
            _ => {}
        }
        Done {
            kind: DoneKind::Done,
            status: DoneStatus::FINAL,
            cur_cmd: 0,
            row_count: 0,
        }
        .encode(&mut out);
        out
    }

    fn begin(&mut self, out: &mut Vec<u8>) {
        self.next += 1;
        let descriptor = self.next;
        self.open = Some(descriptor);
        EnvChange::BeginTransaction { descriptor }.encode(out);
    }

    fn end(&mut self, out: &mut Vec<u8>, change: impl Fn(u64) -> EnvChange) {
        if let Some(descriptor) = self.open.take() {
            change(descriptor).encode(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tds::token::walker::{TokenEvent, TokenWalker};

    fn begin(level: u8, name: &str) -> BeginXact {
        BeginXact {
            isolation_level: level,
            name: name.into(),
        }
    }

    #[test]
    fn translates_each_request() {
        assert_eq!(
            to_sql(&TmRequest::BeginXact(begin(
                isolation_level::SERIALIZABLE,
                ""
            )))
            .unwrap(),
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; BEGIN TRANSACTION"
        );
        assert_eq!(
            to_sql(&TmRequest::CommitXact {
                name: String::new(),
                begin: Some(begin(isolation_level::NO_CHANGE, "t]x"))
            })
            .unwrap(),
            "COMMIT TRANSACTION; BEGIN TRANSACTION [t]]x]"
        );
        assert_eq!(
            to_sql(&TmRequest::RollbackXact {
                name: "sp1".into(),
                begin: None
            })
            .unwrap(),
            "ROLLBACK TRANSACTION [sp1]"
        );
        assert!(to_sql(&TmRequest::PromoteXact).is_err());
    }

    fn events(bytes: &[u8]) -> Vec<TokenEvent> {
        let mut events = Vec::new();
        TokenWalker::new().feed(bytes, &mut events).unwrap();
        events
    }

    #[test]
    fn replies_carry_matching_descriptors() {
        let mut tx = EmulatedTransaction::default();
        let began = events(&tx.reply(&TmRequest::BeginXact(begin(0, ""))));
        let TokenEvent::EnvChange(EnvChange::BeginTransaction { descriptor }) = began[0] else {
            panic!("{began:?}")
        };
        assert!(tx.is_open());
        let committed = events(&tx.reply(&TmRequest::CommitXact {
            name: String::new(),
            begin: None,
        }));
        assert!(matches!(
            committed[0],
            TokenEvent::EnvChange(EnvChange::CommitTransaction { descriptor: d }) if d == descriptor
        ));
        assert!(matches!(committed[1], TokenEvent::Done(_)));
        assert!(!tx.is_open());
    }
}
