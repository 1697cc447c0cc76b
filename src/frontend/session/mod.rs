//! The request loop of one logged-in client: read a request, route it, run
//! it on the chosen backend connection, stream the response back. The
//! session decides; the backend connection ([`BackendConn`]) speaks the
//! protocol.
//!
//! [`BackendConn`]: crate::backend::BackendConn

mod cache;
mod emulation;
mod lifecycle;
mod pins;
mod prepared;
mod request;
mod shadow;
mod state;

use std::sync::Arc;
use std::time::Instant;

use super::reply::{attention_ack, error_response, ClientError};
use super::transaction_emulation::EmulatedTransaction;
use crate::backend::{plan_settings, BackendLogin, Settings};
use crate::backend::{
    BackendError, BackendPools, Cluster, DatabasePoolHandle, PooledBackend, RelayEnd, RelayOptions,
    ResponseSummary,
};
use crate::classify::SessionEffect;
use crate::config::{Limits, PoolMode};
use crate::metrics::{ClientGauges, ErrorKind};
use crate::router::{Decision, PinReason, Reason, Router, Target};
use crate::shutdown::{Phase, PhaseWatch, Shutdown};
use crate::tds::packet::{PacketType, Status};
use crate::transport::{ClientConn, Packet, ReadError, Request};
use prepared::{Outgoing, PreparedStatements};
use request::RequestHead;
use state::{ConnectionCleanup, RoutingState, Scope};

/// Why a session ended other than by the client logging off.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client: {0}")]
    Client(#[from] ReadError),
    #[error("client went away: {0}")]
    ClientGone(std::io::Error),
    #[error("client protocol violation: {0}")]
    Protocol(String),
    #[error("backend failed mid-response: {0}")]
    BackendLost(String),
    /// The connection holding the session's transaction or pinned state was
    /// lost: the client's connection is closed, as SQL Server's would be.
    #[error("session state lost with its backend connection: {0}")]
    StateLost(String),
    /// The drain's time ran out while a request was running.
    #[error("request cut off: {0}")]
    ShuttingDown(String),
}

/// What a session needs of the proxy: the backends, the router and the
/// limits — not the whole proxy.
pub struct SessionContext {
    pub cluster: Arc<Cluster>,
    pub router: Arc<Router>,
    pub limits: Limits,
    /// The server name Sluice signs its own messages with.
    pub server_name: String,
    /// Which procedures are read-only by their definitions, when
    /// `routing.detect_read_only_procedures` is on.
    pub catalog: Option<Arc<crate::catalog::ProcedureCatalog>>,
    /// The primary never answers Transaction Manager requests: emulate them.
    pub emulate_transaction_requests: bool,
    /// Whether a backend connection is held for a request or a session.
    pub pool_mode: PoolMode,
    /// The proxy's drain phase (see `lifecycle`).
    pub shutdown: Arc<crate::shutdown::Shutdown>,
    /// `listen.shutdown_timeout_ms`, for the message of a session cut off.
    pub shutdown_timeout: std::time::Duration,
    /// Shadow mode (`routing.mode = "shadow"`): everything runs on the
    /// primary, and sampled reads are shadowed on replicas by this runner.
    pub shadow: Option<Arc<crate::shadow::ShadowRunner>>,
    /// The result cache (`[cache]`), when configured.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
}

/// Who the client is, for routing rules and its backend login.
pub struct ClientIdentity {
    pub user: String,
    pub application: String,
    /// The user's own backend login (`[[users]] backend_user`), if any.
    pub backend_login: Option<Arc<BackendLogin>>,
}

/// A backend connection the session holds.
struct Held {
    conn: PooledBackend,
    /// It held pinned state at some point: it gets RESETCONNECTION before
    /// another client uses it.
    dirty: bool,
}

/// A prepare (sp_prepare, sp_prepexec) in flight: the client's handle to
/// put in its reply, and the statement's key on the serving connection.
#[derive(Debug, Clone)]
struct Prepare {
    handle: i32,
    key: Arc<str>,
}

/// The replica connection a session holds, and which replica it is.
struct HeldReplica {
    index: usize,
    held: Held,
}

pub struct Session {
    ctx: Arc<SessionContext>,
    /// The newest context: a reload replaces it (see `follow_reload`).
    contexts: Arc<arc_swap::ArcSwap<SessionContext>>,
    client: ClientConn,
    identity: ClientIdentity,
    /// Current database (login database, then ENVCHANGEs), for routing rules.
    database: String,
    /// The database the client logged in to: its pool.
    login_database: String,
    primary: Option<Held>,
    replica: Option<HeldReplica>,
    /// Where the last request went: a late attention goes there too.
    last_target: Target,
    routing: RoutingState,
    emulated: EmulatedTransaction,
    /// The prepared handles this client sees: Sluice's own, mapped to
    /// statements each connection prepares on demand.
    prepared: PreparedStatements,
    /// The session's settings before the request in flight changed them:
    /// what the serving connection must carry before the request runs.
    settings_before: Option<Settings>,
    clients: ClientGauges,
    /// This session in the admin API's client list.
    registration: Option<super::Registration>,
    /// Shadow mode's state of the request in flight.
    shadow: shadow::ShadowTurn,
    /// The result cache's part in the request in flight.
    cache_turn: cache::CacheTurn,
    /// The tables the open transaction wrote: invalidated again when it ends.
    transaction_tables: Vec<String>,
    /// The proxy's drain reaching Draining and Closing, watched between
    /// requests and while a response streams (see [`PhaseWatch`]).
    draining: PhaseWatch,
    closing: PhaseWatch,
    /// The pools of the login database this session checks connections out
    /// of: the primary's and each replica's (by index), looked up on first
    /// use and forgotten when a reload swaps the context.
    primary_pool: Option<DatabasePoolHandle>,
    replica_pools: Vec<Option<DatabasePoolHandle>>,
}

impl Drop for Session {
    /// A client that leaves inside a transaction Sluice knows of only from
    /// the SQL (a server that sends no ENVCHANGE) or from TM emulation
    /// leaves it open on the connection: discard it, so its locks go now.
    fn drop(&mut self) {
        // So must a connection holding state a reset does not undo
        // (EXECUTE AS, an application role): the next client's reset
        // would fail on it.
        let unresettable = self.routing.take_connection_cleanup() == ConnectionCleanup::Discard;
        if self.routing.in_transaction() || self.emulated.is_open() || unresettable {
            if let Some(held) = self.primary.as_mut() {
                held.conn.mark_broken();
            }
        }
    }
}

/// How one try of a request went.
enum Attempt {
    Served(Served),
    /// Nothing reached the client; the request may run elsewhere.
    Failed(AttemptFailure),
}

/// What the response of a request that ran said.
struct Served {
    summary: ResponseSummary,
}

struct AttemptFailure {
    /// What the client gets if the request cannot run elsewhere.
    error: ClientError,
    /// The client's request was read to its end (no packets left to drain).
    request_consumed: bool,
}

impl Attempt {
    fn failed(error: ClientError, request_consumed: bool) -> Attempt {
        Attempt::Failed(AttemptFailure {
            error,
            request_consumed,
        })
    }
}

impl Session {
    pub fn new(
        contexts: Arc<arc_swap::ArcSwap<SessionContext>>,
        client: ClientConn,
        identity: ClientIdentity,
        database: String,
    ) -> Self {
        let ctx = contexts.load_full();
        Session {
            draining: Shutdown::watch(&ctx.shutdown, Phase::Draining),
            closing: Shutdown::watch(&ctx.shutdown, Phase::Closing),
            ctx,
            contexts,
            client,
            identity,
            routing: RoutingState::new(&database),
            login_database: database.clone(),
            database,
            primary: None,
            replica: None,
            last_target: Target::Primary,
            emulated: EmulatedTransaction::default(),
            prepared: PreparedStatements::default(),
            settings_before: None,
            clients: ClientGauges::new(),
            registration: None,
            shadow: shadow::ShadowTurn::default(),
            cache_turn: cache::CacheTurn::default(),
            transaction_tables: Vec::new(),
            primary_pool: None,
            replica_pools: Vec::new(),
        }
    }

    /// The client's LOGIN7 named a language other than the backend's: its
    /// session runs in that language on every connection.
    pub fn with_login_language(mut self, language: &str) -> Self {
        self.routing.set_login_language(language);
        self
    }

    /// Serves requests until the client disconnects.
    pub async fn run(mut self) -> Result<(), SessionError> {
        let result = self.serve().await;
        if let Err(e) = &result {
            e.kind().record();
        }
        match &result {
            Err(SessionError::StateLost(detail)) => {
                let error = ClientError::state_lost(detail);
                self.send_error(&error).await.ok();
                self.client.shutdown().await;
            }
            Err(SessionError::BackendLost(_)) => self.client.shutdown().await,
            _ => {}
        }
        result
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        loop {
            let idle = self.clients.idle();
            let packet = match self.next_request().await {
                Ok(p) => p,
                Err(ReadError::Closed) => return Ok(()),
                Err(ReadError::Malformed(e)) => return self.refuse(ClientError::protocol(e)).await,
                Err(e) => return Err(e.into()),
            };
            drop(idle);
            let _active = self.clients.active();
            match packet.ty() {
                ty if ty.is_request() => {
                    self.report_busy();
                    self.handle_request(packet).await?;
                    self.report_idle();
                }
                PacketType::ATTENTION => self.handle_idle_attention().await?,
                ty => {
                    let detail = format!("unexpected packet type 0x{:02X} after login", ty.0);
                    return self.refuse(ClientError::protocol(detail)).await;
                }
            }
        }
    }

    /// Sends a final error to the client and ends the session.
    async fn refuse(&mut self, error: ClientError) -> Result<(), SessionError> {
        let reason = error.message.clone();
        self.send_error(&error).await.ok();
        Err(SessionError::Protocol(reason))
    }

    async fn send_error(&mut self, error: &ClientError) -> std::io::Result<()> {
        let payload = error_response(error, &self.ctx.server_name);
        self.client.send_message(&payload).await
    }

    async fn handle_request(&mut self, first: Packet) -> Result<(), SessionError> {
        self.follow_reload();
        self.cache_turn = cache::CacheTurn::default();
        let request = self.buffer_request(first).await?;
        self.settings_before = None;
        self.client_reset(request.first_status());
        if request.ty() == PacketType::TRANSACTION_MANAGER && self.ctx.emulate_transaction_requests
        {
            return self.emulate_transaction_request(request).await;
        }
        let head = request::decode(&request);
        match head {
            RequestHead::Prepare { sql, params } => self.prepare(sql, params, request).await,
            RequestHead::Execute(handle) => self.execute_prepared(handle, request).await,
            RequestHead::Unprepare(handle) => self.unprepare(handle, request).await,
            RequestHead::BatchedPrepared => {
                // Forwarding it would send Sluice's handle numbers to a
                // server that numbers its own: refuse rather than misrun.
                let error = ClientError::request(
                    "Sluice: an RPC request with several calls, one of them a prepared-statement \
                     call (sp_prepare, sp_prepexec, sp_execute, sp_unprepare), is not supported; \
                     send such calls one per request",
                );
                self.fail_request(request.is_complete(), error).await
            }
            head => {
                let mut decision = self.route(&head);
                if self.answer_from_cache(&head, &decision, &request).await? {
                    return Ok(());
                }
                if self.cache_turn.ticket.is_some() {
                    // What fills the cache is served for the entry's whole
                    // life: never a lagging replica's rows.
                    decision = decision.filling_the_cache();
                }
                self.count_request(&decision);
                let probe = self.shadow_probe(head, &decision, &request);
                let served = self
                    .execute(decision.target, Outgoing::AsIs(request), None)
                    .await;
                // A ticket not used (the request failed) must not keep
                // other sessions waiting for this key until the next request.
                self.cache_turn = cache::CacheTurn::default();
                self.shadow_report(probe, &served);
                served.map(drop)
            }
        }
    }

    /// A reload swapped the session context: adopt the new one at this
    /// request boundary. A held replica connection keeps its place if its
    /// replica is still in the cluster (its index may have moved), else it
    /// goes back to its pool, which drains with the removed replica. A
    /// held primary connection of a primary the reload replaced goes back
    /// too, unless the session's work lives only on it (a transaction, a
    /// pin): then it stays until that ends.
    fn follow_reload(&mut self) {
        let current = self.contexts.load();
        if Arc::ptr_eq(&current, &self.ctx) {
            return;
        }
        let current = arc_swap::Guard::into_inner(current);
        self.primary_pool = None;
        self.replica_pools.clear();
        let (old, new) = (self.ctx.cluster.clone(), current.cluster.clone());
        let new_index = |index: usize| {
            let replica = old.replica(index)?;
            new.replicas().iter().position(|r| Arc::ptr_eq(r, replica))
        };
        if let Some(HeldReplica { index, held }) = self.replica.take() {
            match new_index(index) {
                Some(index) => self.replica = Some(HeldReplica { index, held }),
                None => self.release(Target::Replica(index), held),
            }
        }
        if let Target::Replica(index) = self.last_target {
            self.last_target = new_index(index).map_or(Target::Primary, Target::Replica);
        }
        if !Arc::ptr_eq(old.primary(), new.primary()) {
            if let Some(held) = self.primary.take() {
                if self.primary_is_movable(&held) {
                    self.release(Target::Primary, held);
                } else {
                    self.primary = Some(held);
                }
            }
        }
        self.ctx = current;
    }

    fn view(&self) -> crate::router::SessionView<'_> {
        let mut view = self.routing.view(
            &self.identity.user,
            &self.identity.application,
            &self.database,
            self.emulated.is_open(),
        );
        view.current_replica = self.replica.as_ref().map(|r| r.index);
        view
    }

    /// Asks the router, then records what the request does to the session.
    fn route(&mut self, head: &RequestHead) -> Decision {
        let request = match head {
            RequestHead::Sql(sql)
            | RequestHead::ExecuteSql(sql)
            | RequestHead::AppLock(sql)
            | RequestHead::Prepare { sql, .. } => crate::router::Request::Sql(sql),
            RequestHead::Procedure(name) => crate::router::Request::Procedure(name),
            RequestHead::Cursor(_) => crate::router::Request::PrimaryOnly("API server cursor"),
            RequestHead::BatchedPrepared => {
                crate::router::Request::PrimaryOnly("batched prepared-statement calls")
            }
            RequestHead::Execute(_) | RequestHead::Unprepare(_) => {
                crate::router::Request::PrimaryOnly("prepared statement call")
            }
            RequestHead::PrimaryOnly(why) => crate::router::Request::PrimaryOnly(why),
        };
        let decision = self.route_request(request, head.scope());
        if let RequestHead::Cursor(call) = head {
            self.routing.apply_effects(&call.effects());
        }
        decision
    }

    fn route_request(&mut self, request: crate::router::Request<'_>, scope: Scope) -> Decision {
        let now = Instant::now();
        let replicas = self.ctx.cluster.replica_views();
        let procedures = self
            .ctx
            .catalog
            .as_ref()
            .and_then(|c| c.lookup(&self.database));
        let mut view = self.view();
        view.procedures = procedures.as_deref();
        let mut decision = self.ctx.router.route(request, &view, &replicas, now);
        self.shadow_override(&mut decision);
        // The macro evaluates its fields only once the level is enabled:
        // at info the fingerprint is never built.
        tracing::debug!(
            spid = self.client.spid(),
            target = ?decision.target,
            reason = %decision.reason,
            fingerprint = %request_fingerprint(request),
            "routed"
        );
        self.forget_changed_procedures(request, &decision);
        match (&decision.classification, request) {
            (Some(c), _) => {
                if c.effects.iter().any(SessionEffect::changes_settings) {
                    self.settings_before = Some(self.routing.settings().clone());
                }
                let class = if decision.reason.detected_read_only() {
                    c.class_if_unlisted_read_only
                } else {
                    c.class
                };
                self.routing.apply_as(c, class, scope, now)
            }
            (None, crate::router::Request::PrimaryOnly(_)) => self.routing.record_write(now),
            (None, _) => {}
        }
        self.plan_invalidation(request, &decision);
        decision
    }

    /// A batch that creates, alters or drops a procedure makes what the
    /// catalog knows of this database stale: forget it before the batch
    /// runs (calls go to the primary meanwhile); the catalog reads it
    /// again.
    fn forget_changed_procedures(&self, request: crate::router::Request<'_>, decision: &Decision) {
        let (Some(catalog), crate::router::Request::Sql(sql)) = (&self.ctx.catalog, request) else {
            return;
        };
        let writes = decision
            .classification
            .as_ref()
            .is_some_and(|c| c.class != crate::classify::Class::Read);
        if writes && crate::classify::changes_procedures(sql) {
            catalog.invalidate(&self.database);
        }
    }

    /// Counts a routed request against the backend it goes to.
    fn count_request(&self, decision: &Decision) {
        if let Some(metrics) = self.request_metrics(decision.target) {
            metrics.record(decision.reason.label());
        }
        if matches!(decision.reason, Reason::ReadYourWrites { .. }) {
            metrics::counter!(crate::metrics::READ_YOUR_WRITES_HOLDS).increment(1);
        }
    }

    fn request_metrics(&self, target: Target) -> Option<&crate::metrics::RequestMetrics> {
        match target {
            Target::Primary => Some(self.ctx.cluster.primary().requests()),
            Target::Replica(index) => self.ctx.cluster.replica(index).map(|r| r.requests()),
        }
    }

    /// A client's own reset bit starts a new logical session
    /// [MS-TDS 2.2.3.1.2]. RESETCONNECTION clears everything;
    /// RESETCONNECTIONSKIPTRAN keeps an open transaction, and then the
    /// primary connection (which carries it, and gets the client's bit with
    /// this request) must not get a full reset of Sluice's.
    fn client_reset(&mut self, status: Status) {
        let keeps_transaction = !status.contains(Status::RESET_CONNECTION)
            && status.contains(Status::RESET_CONNECTION_SKIP_TRAN)
            && (self.routing.in_transaction() || self.emulated.is_open());
        if keeps_transaction {
            self.routing.reset_keeping_transaction();
            if let Some(held) = self.primary.as_mut() {
                // The client's own bit resets it with this request.
                held.conn.expect_client_reset();
            }
        } else if status.resets_connection() {
            self.routing.reset();
            if let Some(held) = self.primary.as_mut() {
                held.conn.reset_on_next_request();
            }
        } else {
            return;
        }
        // The replica connection still has the old session's settings and
        // statements: back to the pool, where it will be reset before its
        // next use.
        self.replica = None;
        self.prepared.clear();
    }

    /// Runs the request on `target` and relays the answer. A read whose
    /// replica fails before any byte of the answer reached the client runs
    /// again on the primary, invisibly. Returns what the response said
    /// (`None`: it failed and the client got an error instead).
    async fn execute(
        &mut self,
        target: Target,
        outgoing: Outgoing,
        prepare: Option<Prepare>,
    ) -> Result<Option<Served>, SessionError> {
        let started = Instant::now();
        let result = self.execute_on(target, outgoing, prepare).await;
        if let Some(metrics) = self.request_metrics(target) {
            metrics.record_duration(started.elapsed().as_secs_f64());
        }
        result
    }

    /// [`Session::execute`], untimed.
    async fn execute_on(
        &mut self,
        target: Target,
        outgoing: Outgoing,
        prepare: Option<Prepare>,
    ) -> Result<Option<Served>, SessionError> {
        let mut target = target;
        loop {
            // The request stays whole in `outgoing` (attempts write it by
            // reference), so a retry sends the same bytes again.
            let retryable = target.is_replica() && outgoing.is_complete();
            let failure = match self.attempt(target, &outgoing, prepare.clone()).await? {
                Attempt::Served(served) => return Ok(Some(served)),
                Attempt::Failed(failure) => failure,
            };
            if !retryable {
                self.fail_request(failure.request_consumed, failure.error)
                    .await?;
                return Ok(None);
            }
            tracing::warn!(error = %failure.error.message, ?target, "replica failed before replying; retrying on the primary");
            metrics::counter!(crate::metrics::READ_RETRIES).increment(1);
            target = Target::Primary;
        }
    }

    /// One try on one target.
    async fn attempt(
        &mut self,
        target: Target,
        outgoing: &Outgoing,
        prepare: Option<Prepare>,
    ) -> Result<Attempt, SessionError> {
        let complete = outgoing.is_complete();
        let shutdown = self.ctx.shutdown.clone();
        let closing = || shutdown.phase() >= Phase::Closing;
        // Nothing of this request reaches the backend once the proxy is
        // closing, and nothing of it reached the client yet. The phase is
        // read before and after taking a connection, which is mostly
        // immediate; the shutdown is waited on only while the take waits.
        if closing() {
            return Err(self.cut_off(true).await);
        }
        let taken = tokio::select! {
            biased;
            taken = self.take_synced(target, outgoing.first_status()) => taken,
            _ = shutdown.reached(Phase::Closing) => {
                return Err(self.cut_off(true).await);
            }
        };
        if closing() {
            drop(taken);
            return Err(self.cut_off(true).await);
        }
        let mut held = match taken {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, ?target, "no backend connection for a request");
                match e {
                    BackendError::PoolExhausted { .. } => ErrorKind::PoolExhausted.record(),
                    _ => ErrorKind::BackendUnavailable.record(),
                }
                let error = ClientError::backend_unavailable(&e);
                return self.unavailable(target, error, complete);
            }
        };
        let request = match self.bind(&mut held, outgoing).await {
            Ok(request) => request,
            Err(e) => return self.lost(target, held, e, complete),
        };
        if let Err(e) = held.conn.send(&request).await {
            return self.lost(target, held, e.to_string(), complete);
        }
        if !request.is_complete() {
            if let Err(e) = self.stream_request_tail(&mut held.conn, request.ty()).await {
                return self.lost(target, held, e.to_string(), true);
            }
        }
        self.relay_response(target, held, false, prepare).await
    }

    /// No connection could be had for `target`. If the session's state
    /// lived on the connection it had there, that state is gone.
    fn unavailable(
        &mut self,
        target: Target,
        error: ClientError,
        request_consumed: bool,
    ) -> Result<Attempt, SessionError> {
        if target == Target::Primary && self.routing.has_unmovable_state() {
            return Err(SessionError::StateLost(error.message));
        }
        Ok(Attempt::failed(error, request_consumed))
    }

    /// The connection failed before any of its response reached the client.
    /// Only a session without state on it may go on with another one.
    fn lost(
        &mut self,
        target: Target,
        mut held: Held,
        error: String,
        request_consumed: bool,
    ) -> Result<Attempt, SessionError> {
        held.conn.mark_broken();
        ErrorKind::BackendFailed.record();
        let error = format!("backend {} failed: {error}", held.conn.name());
        self.note_backend_failure(target);
        drop(held);
        self.unavailable(target, ClientError::backend_failed(error), request_consumed)
    }

    /// A replica's connection-level failure counts against its health;
    /// client faults never do.
    fn note_backend_failure(&mut self, target: Target) {
        if let Target::Replica(index) = target {
            if let Some(replica) = self.ctx.cluster.replica(index) {
                replica.report_failure();
            }
        }
    }

    /// The connection for `target` (the held one, else one checked out),
    /// brought to the session's settings, its evicted statements unprepared.
    async fn take_synced(
        &mut self,
        target: Target,
        client_status: Status,
    ) -> Result<Held, BackendError> {
        let mut held = self.take(target).await?;
        if let Err(e) = self.sync_settings(&mut held, client_status).await {
            held.conn.mark_broken();
            return Err(e);
        }
        if let Err(e) = held.conn.unprepare_evicted().await {
            held.conn.mark_broken();
            return Err(self.own_request_failed(&held, "unpreparing evicted statements", e));
        }
        Ok(held)
    }

    /// The settings the request in flight must find on its connection.
    fn settings_due(&self) -> &Settings {
        self.settings_before
            .as_ref()
            .unwrap_or_else(|| self.routing.settings())
    }

    /// Applies what differs between the connection's settings and the
    /// session's, in one round trip (none when they match).
    async fn sync_settings(
        &mut self,
        held: &mut Held,
        client_status: Status,
    ) -> Result<(), BackendError> {
        // A request that resets its connection (a pooled driver reusing
        // it) finds the connection as a reset leaves it; the reset must
        // run before the settings, not after.
        let client_resets = client_status.resets_connection();
        if client_resets {
            held.conn.expect_client_reset();
        }
        let Some(plan) = plan_settings(held.conn.settings(), self.settings_due()) else {
            return Ok(());
        };
        if client_resets && !plan.batch.is_empty() {
            held.conn.carry_client_reset(client_status);
        } else if plan.reset {
            if held.conn.in_transaction() {
                let detail = "its settings cannot be reset inside a transaction".to_string();
                let backend = held.conn.name().clone();
                return Err(BackendError::Protocol { backend, detail });
            }
            held.conn.reset_on_next_request();
        }
        if !plan.batch.is_empty() {
            let reply = held.conn.run_batch(&plan.batch).await;
            let failed = match reply {
                Ok(reply) if reply_has_error(&reply) => Some("the server refused them".to_string()),
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(cause) = failed {
                let what = "applying the session's settings";
                return Err(self.own_request_failed(held, what, cause));
            }
        }
        let due = self.settings_due().clone();
        held.conn.set_settings(&due);
        Ok(())
    }

    fn own_request_failed(
        &self,
        held: &Held,
        what: &str,
        cause: impl std::fmt::Display,
    ) -> BackendError {
        BackendError::Protocol {
            backend: held.conn.name().clone(),
            detail: format!("{what}: {cause}"),
        }
    }

    async fn take(&mut self, target: Target) -> Result<Held, BackendError> {
        let fingerprint = self.settings_due().fingerprint();
        let database = self.login_database.as_str();
        let login = self.identity.backend_login.as_deref();
        match target {
            Target::Primary => match self.primary.take() {
                Some(held) => Ok(held),
                None => {
                    let primary = self.ctx.cluster.primary();
                    let slot = &mut self.primary_pool;
                    let pool = kept_pool(slot, primary.pools(), database, login)?;
                    let conn = primary.checkout(&pool, fingerprint).await?;
                    Ok(Held { conn, dirty: false })
                }
            },
            Target::Replica(index) => {
                if let Some(current) = self.replica.take() {
                    if current.index == index {
                        return Ok(current.held);
                    }
                }
                let replica =
                    self.ctx
                        .cluster
                        .replica(index)
                        .ok_or_else(|| BackendError::Protocol {
                            backend: Arc::from("replica"),
                            detail: format!("no replica #{index}"),
                        })?;
                if self.replica_pools.len() <= index {
                    self.replica_pools.resize(index + 1, None);
                }
                let slot = &mut self.replica_pools[index];
                let pool = kept_pool(slot, replica.pools(), database, login)?;
                let conn = pool.checkout(fingerprint).await?;
                Ok(Held { conn, dirty: false })
            }
        }
    }

    /// After a complete response: the session keeps the connection (session
    /// mode, or state only that connection has), else it goes back to the
    /// pool as it is, or reset when it held pinned state.
    fn keep_or_release(&mut self, target: Target, held: Held) {
        self.last_target = target;
        let keep = match target {
            Target::Primary => {
                self.ctx.pool_mode == PoolMode::Session || !self.primary_is_movable(&held)
            }
            Target::Replica(_) => self.ctx.pool_mode == PoolMode::Session,
        };
        if keep {
            match target {
                Target::Primary => self.primary = Some(held),
                Target::Replica(index) => self.replica = Some(HeldReplica { index, held }),
            }
            return;
        }
        self.release(target, held);
    }

    /// Whether the session's work may continue on another primary
    /// connection: nothing lives only on this one.
    fn primary_is_movable(&self, held: &Held) -> bool {
        !(self.routing.has_unmovable_state()
            || self.emulated.is_open()
            || held.conn.in_transaction())
    }

    /// Gives a connection back to its pool: as it is, reset, or closed,
    /// as what the session did on it requires.
    fn release(&mut self, target: Target, mut held: Held) {
        if target == Target::Primary {
            match self.routing.take_connection_cleanup() {
                ConnectionCleanup::Discard => held.conn.discard(),
                ConnectionCleanup::Reset => held.dirty = true,
                ConnectionCleanup::None => {}
            }
        }
        if !held.dirty {
            held.conn.keep_session_state();
        }
    }

    /// Reads request packets until EOM or until the buffer limit; the
    /// buffered head is what routing gets to look at.
    async fn buffer_request(&mut self, first: Packet) -> Result<Request, SessionError> {
        let limit = self.ctx.limits.request_buffer_bytes;
        let ty = first.ty();
        let mut request = Request::new(first);
        while !request.is_complete() && request.buffered_len() < limit {
            let packet = self.client.read_packet().await?;
            check_continuation(ty, &packet)?;
            request.push(packet);
        }
        Ok(request)
    }

    /// Answers a request that could not be forwarded with an error. The
    /// client may still be sending it: the rest is read and dropped first.
    async fn fail_request(
        &mut self,
        complete: bool,
        error: ClientError,
    ) -> Result<(), SessionError> {
        tracing::warn!(spid = self.client.spid(), error = %error.message, "request failed before reaching a backend");
        if !complete {
            loop {
                if self.client.read_packet().await?.is_eom() {
                    break;
                }
            }
        }
        self.send_error(&error)
            .await
            .map_err(SessionError::ClientGone)
    }

    /// Streams the rest of a request bigger than the buffer limit.
    async fn stream_request_tail(
        &mut self,
        conn: &mut PooledBackend,
        ty: PacketType,
    ) -> Result<(), std::io::Error> {
        loop {
            let packet = self
                .client
                .read_packet()
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if packet.ty() != ty {
                conn.mark_broken();
                return Err(std::io::Error::other(
                    "packet type changed inside a request",
                ));
            }
            conn.send_continuation(&packet).await?;
            if packet.is_eom() {
                return Ok(());
            }
        }
    }

    /// An attention with no request running (it crossed the end of the
    /// response): the backend that served the last request must still
    /// acknowledge it. A connection already back in the pool has nothing
    /// to cancel: Sluice acknowledges.
    async fn handle_idle_attention(&mut self) -> Result<(), SessionError> {
        let target = self.last_target;
        let held = match target {
            Target::Primary => self.primary.take(),
            Target::Replica(_) => self.replica.take().map(|r| r.held),
        };
        let Some(mut held) = held else {
            return self
                .client
                .send_message(&attention_ack())
                .await
                .map_err(SessionError::ClientGone);
        };
        if let Err(e) = held.conn.attention().await {
            return Err(SessionError::BackendLost(e.to_string()));
        }
        match self.relay_response(target, held, true, None).await? {
            Attempt::Served(_) => Ok(()),
            Attempt::Failed(failure) => Err(SessionError::BackendLost(failure.error.message)),
        }
    }

    /// Streams the response of `held` and decides what its end means.
    async fn relay_response(
        &mut self,
        target: Target,
        mut held: Held,
        attention_sent: bool,
        prepare: Option<Prepare>,
    ) -> Result<Attempt, SessionError> {
        let _in_flight = match target {
            Target::Replica(index) => self.ctx.cluster.replica(index).map(|r| r.in_flight()),
            Target::Primary => None,
        };
        let missing_handle_error = prepare.as_ref().map(|_| {
            let error = ClientError::request(format!(
                "Sluice: backend {} answered a prepare (sp_prepare/sp_prepexec) with neither a statement handle nor an error",
                held.conn.name()
            ));
            Arc::new(error.to_token(&self.ctx.server_name))
        });
        let options = RelayOptions {
            attention_sent,
            drain_timeout: self.ctx.limits.drain_timeout(),
            client_handle: prepare.as_ref().map(|p| p.handle),
            missing_handle_error,
            digest_rows: self.shadow.digest,
            capture: self.capture_limit(),
            hold_final: !self.cache_turn.invalidate.is_empty(),
        };
        let mut relayed = held
            .conn
            .relay(&mut self.client, options, &mut self.closing)
            .await;
        self.learn(target, &mut held, &relayed.summary);
        self.invalidate_written().await;
        if let Some(last) = relayed.final_packet.take() {
            if let Err(e) = self.client.forward(last).await {
                return Err(SessionError::ClientGone(e));
            }
        }
        match relayed.end {
            RelayEnd::Complete => {
                self.store_response(&mut relayed.summary).await;
                if let (Some(prepare), Some(real)) = (prepare, relayed.summary.handle) {
                    held.conn.remember_prepared(prepare.key, real);
                }
                self.keep_or_release(target, held);
                Ok(Attempt::Served(Served {
                    summary: relayed.summary,
                }))
            }
            // The relay cancelled and drained the connection (or marked it
            // broken); dropping it returns it to the pool.
            RelayEnd::ClientGone(e) => Err(SessionError::ClientGone(e)),
            RelayEnd::ClientViolation(detail) => Err(SessionError::Protocol(detail)),
            RelayEnd::AttentionUnacknowledged => Err(SessionError::BackendLost(format!(
                "backend {} did not acknowledge ATTENTION within limits.drain_timeout_ms",
                held.conn.name()
            ))),
            RelayEnd::ShuttingDown { at_token_boundary } => {
                // Marked broken by the relay: dropping it closes it, and the
                // server rolls back what the request did.
                drop(held);
                Err(self.cut_off(at_token_boundary).await)
            }
            RelayEnd::BackendFailed {
                error,
                forwarded,
                at_token_boundary,
            } => {
                if !forwarded {
                    return self.lost(target, held, error, true);
                }
                let error = format!("backend {} failed: {error}", held.conn.name());
                self.note_backend_failure(target);
                drop(held);
                if target == Target::Primary && self.routing.has_unmovable_state() {
                    return Err(SessionError::StateLost(error));
                }
                if !at_token_boundary {
                    // The client holds part of a token: no clean way to
                    // finish that message but to close the connection.
                    return Err(SessionError::BackendLost(error));
                }
                // Finish the half-sent message with an error the driver
                // reports, and keep the session: the next request gets a
                // new backend connection.
                ErrorKind::BackendLostMidResponse.record();
                let error =
                    ClientError::backend_failed(format!("{error} while sending this result"));
                self.send_error(&error)
                    .await
                    .map_err(SessionError::ClientGone)?;
                // Answered (with an error): not to be retried, and nothing
                // it returned (a handle) is usable.
                Ok(Attempt::Served(Served {
                    summary: ResponseSummary::default(),
                }))
            }
        }
    }

    /// What a response said about the session: the server's word on
    /// transactions and the database; a stream Sluice could not follow
    /// pins the session to the primary (it may have missed a BEGIN). The
    /// connection now carries the session's settings, those the request
    /// itself set included.
    fn learn(&mut self, target: Target, held: &mut Held, summary: &ResponseSummary) {
        self.routing.settle(summary.ran_cleanly());
        if let Some(open) = summary.transaction {
            self.routing.observe_transaction(open);
        }
        if let Some(database) = &summary.database {
            self.database.clone_from(database);
            self.routing.observe_database(database);
        }
        if summary.unreadable {
            self.routing.pin_to_primary(PinReason::UnreadableResponse);
        }
        let before = self.settings_before.take();
        if summary.error && before.is_some() {
            // A batch that set options failed somewhere: whether its SETs
            // ran is unknown. On the primary the connection is the truth
            // and the session stays with it; a replica connection is reset.
            match target {
                Target::Primary => self.routing.pin_to_primary(PinReason::UnknownSettings),
                Target::Replica(_) => {
                    held.dirty = true;
                    self.routing.restore_settings(before.unwrap_or_default());
                    return;
                }
            }
        }
        held.conn.set_settings(self.routing.settings());
    }
}

/// The pool of the login database on `pools`, kept in `slot` after the
/// first lookup.
fn kept_pool(
    slot: &mut Option<DatabasePoolHandle>,
    pools: &BackendPools,
    database: &str,
    login: Option<&BackendLogin>,
) -> Result<DatabasePoolHandle, BackendError> {
    if let Some(pool) = slot {
        return Ok(pool.clone());
    }
    let pool = pools.pool(database, login)?;
    *slot = Some(pool.clone());
    Ok(pool)
}

/// What the routing log shows of a request: its statement with the
/// literals replaced, or the procedure's name; never a parameter's value.
fn request_fingerprint(request: crate::router::Request<'_>) -> String {
    match request {
        crate::router::Request::Sql(sql) => crate::classify::fingerprint(sql),
        crate::router::Request::Procedure(name) => name
            .chars()
            .take(crate::classify::MAX_FINGERPRINT_CHARS)
            .collect(),
        // The reason names what it is.
        crate::router::Request::PrimaryOnly(_) => String::new(),
    }
}

/// Whether a whole reply carries an ERROR token (or cannot be read).
pub(super) fn reply_has_error(reply: &[u8]) -> bool {
    use crate::tds::token::walker::{TokenEvent, TokenWalker};
    let mut events = Vec::new();
    let walked = TokenWalker::new().feed(reply, &mut events);
    walked.is_err() || events.iter().any(|e| matches!(e, TokenEvent::Error(_)))
}

impl SessionError {
    /// The bounded kind an ended session counts under.
    fn kind(&self) -> ErrorKind {
        match self {
            SessionError::Client(ReadError::Malformed(_)) | SessionError::Protocol(_) => {
                ErrorKind::Protocol
            }
            SessionError::Client(_) | SessionError::ClientGone(_) => ErrorKind::ClientGone,
            SessionError::BackendLost(_) => ErrorKind::BackendLostMidResponse,
            SessionError::StateLost(_) => ErrorKind::StateLost,
            SessionError::ShuttingDown(_) => ErrorKind::ShuttingDown,
        }
    }
}

fn check_continuation(ty: PacketType, packet: &Packet) -> Result<(), SessionError> {
    if packet.ty() != ty {
        return Err(SessionError::Protocol(format!(
            "packet type 0x{:02X} inside a message of type 0x{:02X}",
            packet.ty().0,
            ty.0
        )));
    }
    Ok(())
}
