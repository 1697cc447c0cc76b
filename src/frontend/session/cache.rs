//! The session's side of the result cache: answer an opted-in read from
//! it, store what a miss returned, and move on the generations of what a
//! write changed before the write's response reaches its client.

use std::sync::Arc;

use super::request::RequestHead;
use super::{Session, SessionError};
use crate::backend::ResponseSummary;
use crate::cache::{self, Asked, Lookup, ResultCache, Ticket, Verdict};
use crate::classify::Class;
use crate::router::{Decision, Request};
use crate::tds::packet::PacketType;
use crate::transport::Request as Message;

/// Most tables a transaction's writes are remembered by; past it, its end
/// invalidates everything.
const MAX_TRANSACTION_TABLES: usize = 256;

/// What the cache has to do with the request in flight.
#[derive(Default)]
pub(super) struct CacheTurn {
    /// A miss's right to store the response.
    pub ticket: Option<Ticket>,
    /// Generations to move on before the client sees the response end.
    pub invalidate: Vec<String>,
}

impl Session {
    fn cache(&self) -> Option<Arc<ResultCache>> {
        self.ctx.cache.clone()
    }

    /// Answers `head` from the cache when it is opted in and a current
    /// entry exists; on a miss, arranges for its response to be stored.
    /// Returns whether the client got its answer.
    pub(super) async fn answer_from_cache(
        &mut self,
        head: &RequestHead,
        decision: &Decision,
        message: &Message,
    ) -> Result<bool, SessionError> {
        let Some(cache) = self.cache() else {
            return Ok(false);
        };
        let plan = match self.cache_verdict(&cache, head, decision) {
            Verdict::Cache(plan) => plan,
            Verdict::Skip(skip) => {
                cache::count_bypass(skip.label());
                return Ok(false);
            }
            Verdict::NotOptedIn => return Ok(false),
        };
        let payload = message.payload();
        let Some(asked) = asked(head, message.ty(), &payload) else {
            return Ok(false);
        };
        let context = cache::Context {
            login: &self.identity.user,
            database: &self.database,
            settings: self.routing.settings(),
        };
        let key = cache::key::key(asked, &context);
        match cache.lookup(key, &plan).await {
            Lookup::Hit(response, _) => {
                self.client
                    .send_message(&response)
                    .await
                    .map_err(SessionError::ClientGone)?;
                Ok(true)
            }
            Lookup::Miss(ticket) => {
                self.cache_turn.ticket = Some(ticket);
                Ok(false)
            }
            Lookup::Bypass(_) => Ok(false),
        }
    }

    fn cache_verdict(
        &self,
        cache: &ResultCache,
        head: &RequestHead,
        decision: &Decision,
    ) -> Verdict {
        let request = match head {
            RequestHead::Sql(sql) | RequestHead::ExecuteSql(sql) => Request::Sql(sql),
            RequestHead::Procedure(name) => Request::Procedure(name),
            _ => return Verdict::NotOptedIn,
        };
        let view = self.view();
        let statement = cache::Statement {
            request,
            classification: decision.classification.as_deref(),
            class: effective_class(decision),
            user: &self.identity.user,
            application: &self.identity.application,
            database: &self.database,
            in_transaction: view.in_transaction
                || view.implicit_transactions
                || view.strict_isolation,
        };
        cache.policy().decide(&statement)
    }

    /// What a routed request changes, for the cache: the tables it writes,
    /// or everything when they cannot be named. A write inside a
    /// transaction is invalidated again when the transaction ends: other
    /// sessions may have read (and stored) the data before it committed.
    pub(super) fn plan_invalidation(&mut self, request: Request<'_>, decision: &Decision) {
        self.cache_turn.invalidate.clear();
        if self.ctx.cache.is_none() {
            return;
        }
        let mut tables = match (&decision.classification, request) {
            (Some(c), _) => match effective_class(decision) {
                Some(Class::Read | Class::SessionState) => Vec::new(),
                Some(Class::TransactionControl) => std::mem::take(&mut self.transaction_tables),
                _ if c.tables.complete => c
                    .tables
                    .written
                    .iter()
                    .map(|t| cache::policy::qualify(t, &self.database))
                    .collect(),
                _ => vec![cache::all_tables()],
            },
            (None, _) => vec![cache::all_tables()],
        };
        if self.routing.in_transaction() || self.emulated.is_open() {
            remember(&mut self.transaction_tables, &tables);
        }
        if !self.routing.in_transaction() && !self.emulated.is_open() {
            tables.append(&mut self.transaction_tables);
        }
        tables.dedup();
        self.cache_turn.invalidate = tables;
    }

    /// After a response (or its failure): moves the generations of what
    /// the request wrote on. Runs before the final packet is forwarded.
    pub(super) async fn invalidate_written(&mut self) {
        if self.cache_turn.invalidate.is_empty() {
            return;
        }
        if let Some(cache) = self.cache() {
            cache.invalidate(&self.cache_turn.invalidate).await;
        }
    }

    /// Stores a miss's response when the request ran cleanly, whole and
    /// without changing the session.
    pub(super) async fn store_response(&mut self, summary: &mut ResponseSummary) {
        let Some(ticket) = self.cache_turn.ticket.take() else {
            return;
        };
        let reason = if summary.error {
            "error_response"
        } else if summary.interrupted || summary.unreadable {
            "interrupted"
        } else if summary.env_changed {
            "session_state"
        } else {
            match summary.captured.take() {
                Some(response) => {
                    if let Some(cache) = self.cache() {
                        cache.store(ticket, response).await;
                    }
                    return;
                }
                None => "too_large",
            }
        };
        cache::count_bypass(reason);
    }

    /// How many bytes of the response to copy for the cache.
    pub(super) fn capture_limit(&self) -> Option<usize> {
        self.cache_turn.ticket.as_ref()?;
        self.ctx.cache.as_ref().map(|c| c.max_entry_bytes())
    }
}

/// The class routing acted on: a call the catalog proved read-only is a read.
fn effective_class(decision: &Decision) -> Option<Class> {
    let c = decision.classification.as_ref()?;
    Some(if decision.reason.detected_read_only() {
        c.class_if_unlisted_read_only
    } else {
        c.class
    })
}

/// What the key is made of: a batch's text, an RPC's body.
fn asked<'a>(head: &'a RequestHead, ty: PacketType, payload: &'a [u8]) -> Option<Asked<'a>> {
    match (head, ty) {
        (RequestHead::Sql(sql), PacketType::SQL_BATCH) => Some(Asked::Batch(sql)),
        (RequestHead::ExecuteSql(_) | RequestHead::Procedure(_), PacketType::RPC) => {
            let (_, body) = crate::tds::request::split_all_headers(payload).ok()?;
            Some(Asked::Rpc(body))
        }
        _ => None,
    }
}

/// Adds `tables` to a transaction's list; past its bound the list becomes
/// "everything".
fn remember(list: &mut Vec<String>, tables: &[String]) {
    for table in tables {
        if !list.contains(table) {
            list.push(table.clone());
        }
    }
    if list.len() > MAX_TRANSACTION_TABLES {
        *list = vec![cache::all_tables()];
    }
}
