//! A small TDS server for what iridium cannot stage, behaving as SQL Server
//! does where the tests look [MS-TDS]:
//!
//! - LOGIN7 into any database, except `"nope"` (error 4060) and `"slow"`
//!   (answered after [`FakeOptions::slow_login`]);
//! - SQL batches: `BEGIN TRAN` / `COMMIT` / `ROLLBACK` answer with ENVCHANGE
//!   8/9/10, `SELECT ...` with one INT row holding the server's
//!   [`FakeOptions::answer`], `UPDATE`/`INSERT`/`DELETE` with DONE count 1;
//! - RPCs: `sp_prepare` / `sp_prepexec` number handles from 1 per connection
//!   (RETURNVALUE ordinal 0, INTN(4)), `sp_execute` runs the connection's
//!   statement for a handle (error 8179 for a handle this connection never
//!   issued), `sp_unprepare`, `sp_executesql`; each ends with RETURNSTATUS
//!   and DONEPROC;
//! - RESETCONNECTION (status 0x08) rolls an open transaction back and
//!   either reset bit frees the prepared handles, as `sp_reset_connection`
//!   does; ATTENTION is acknowledged with DONE(ATTN)
//!   unless [`FakeOptions::ignore_attention`];
//! - markers in a batch's text stage faults: a result cut between rows or
//!   mid-row, a malformed token stream, a result that never ends.
//!
//! Everything a test may want to check is recorded in [`Fake`]: the
//! statements each connection ran, each `sp_execute`, each connection's
//! login, transaction and close.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sluice::tds::login7::Login7;
use sluice::tds::packet::{encode_message, PacketType, Status};
use sluice::tds::prelogin::{encryption, PreLogin};
use sluice::tds::read::put_b_varchar;
use sluice::tds::request::{proc_id, split_all_headers, sql_batch_text, ProcRef, RpcHead};
use sluice::tds::token::done::{Done, DoneKind, DoneStatus};
use sluice::tds::token::env_change::EnvChange;
use sluice::tds::token::login_ack::LoginAck;
use sluice::tds::token::message::ServerMessage;
use sluice::transport::{Packet, PacketReader};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// In a batch: send the column metadata and two whole rows, then close.
pub const DIE_BETWEEN_ROWS: &str = "die-between-rows";
/// In a batch: send the column metadata and half a row, then close.
pub const DIE_MID_ROW: &str = "die-mid-row";
/// In a batch: run it, but answer with a token stream no client can
/// follow: a valid row, then a token of an undefined type, then DONE.
pub const MALFORMED_RESPONSE: &str = "malformed-response";
/// In a batch: send the column metadata and a row in a packet without EOM,
/// then nothing more until an ATTENTION (acknowledged unless
/// [`FakeOptions::ignore_attention`]).
pub const STALL_MID_RESULT: &str = "stall-mid-result";

/// A token type MS-TDS does not define (2.2.7: none in 0x50..0x77).
pub const UNDEFINED_TOKEN: u8 = 0x5E;

/// SQL Server's "Could not find prepared statement with handle %d." [8179].
pub const UNKNOWN_HANDLE: u32 = 8179;
/// What the statement log shows where a request reset its connection.
pub const RESET_IN_LOG: &str = "exec sp_reset_connection";
/// SQL Server's "Cannot open database ... requested by the login." [4060].
pub const CANNOT_OPEN_DATABASE: u32 = 4060;

#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The value a SELECT returns: tells a test which server ran it.
    pub answer: i32,
    /// How long a login to database `"slow"` waits before its reply.
    pub slow_login: Duration,
    /// Read ATTENTION and never acknowledge it.
    pub ignore_attention: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            answer: 42,
            slow_login: Duration::from_millis(500),
            ignore_attention: false,
        }
    }
}

/// One TCP connection the fake accepted.
#[derive(Debug, Clone, Default)]
pub struct ConnRecord {
    pub id: u64,
    /// The database its LOGIN7 named (empty: none, or no LOGIN7 yet).
    pub database: String,
    /// Its LOGIN7's user, application and host names.
    pub user: String,
    pub application: String,
    pub host: String,
    pub logged_in: bool,
    /// A transaction is open now.
    pub in_transaction: bool,
    /// The peer closed it (or the fake did).
    pub closed: bool,
    /// It closed while a transaction was open (the server rolls it back).
    pub closed_in_transaction: bool,
    /// `IF @@TRANCOUNT > 0 ROLLBACK` that found a transaction to roll back.
    pub trancount_rollbacks: u32,
    /// Requests that carried RESETCONNECTION or RESETCONNECTIONSKIPTRAN.
    pub resets: u32,
    /// Of those, full resets that rolled an open transaction back.
    pub reset_rollbacks: u32,
    /// Handles this connection issued, and their statements.
    pub handles: BTreeMap<i32, String>,
}

impl ConnRecord {
    /// Left idle in the pool with its transaction open: what must not happen.
    pub fn holds_open_transaction(&self) -> bool {
        self.in_transaction && !self.closed
    }
}

/// One `sp_execute` a connection received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub conn: u64,
    pub handle: i32,
    /// The statement the handle names on that connection; `None`: the
    /// connection never issued that handle (answered with error 8179).
    pub statement: Option<String>,
}

#[derive(Default)]
struct Records {
    executions: Vec<Execution>,
    conns: BTreeMap<u64, ConnRecord>,
    next_conn: u64,
}

struct Shared {
    options: FakeOptions,
    /// (connection id, statement text) for every statement run, in order.
    log: Arc<Mutex<Vec<(u64, String)>>>,
    records: Mutex<Records>,
    /// Bumped on every change, so that a test waits on a condition.
    changed: watch::Sender<u64>,
    /// Bumped to make every open connection close (a server restart).
    kill: watch::Sender<u64>,
}

impl Shared {
    fn records(&self) -> MutexGuard<'_, Records> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, conn: u64, f: impl FnOnce(&mut ConnRecord)) {
        if let Some(record) = self.records().conns.get_mut(&conn) {
            f(record);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn log_statement(&self, conn: u64, sql: &str) {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((conn, sql.to_string()));
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A running fake backend and what it has seen.
#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    /// (connection id, statement text) for every statement any connection
    /// ran (batches, sp_prepexec, sp_execute, sp_executesql), in order.
    pub log: Arc<Mutex<Vec<(u64, String)>>>,
    shared: Arc<Shared>,
}

impl Fake {
    pub fn statements(&self) -> Vec<(u64, String)> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Statements whose text contains `needle`, with the connection that ran them.
    pub fn ran(&self, needle: &str) -> Vec<(u64, String)> {
        self.statements()
            .into_iter()
            .filter(|(_, sql)| sql.contains(needle))
            .collect()
    }

    pub fn executions(&self) -> Vec<Execution> {
        self.shared.records().executions.clone()
    }

    pub fn connections(&self) -> Vec<ConnRecord> {
        self.shared.records().conns.values().cloned().collect()
    }

    pub fn connection(&self, id: u64) -> Option<ConnRecord> {
        self.shared.records().conns.get(&id).cloned()
    }

    /// Successful logins so far.
    pub fn logins(&self) -> usize {
        self.connections().iter().filter(|c| c.logged_in).count()
    }

    /// LOGIN7 messages received for `database` (answered or not yet).
    pub fn login_attempts(&self, database: &str) -> usize {
        self.connections()
            .iter()
            .filter(|c| c.database.eq_ignore_ascii_case(database))
            .count()
    }

    /// Logged-in connections not closed.
    pub fn live_connections(&self) -> usize {
        self.connections()
            .iter()
            .filter(|c| c.logged_in && !c.closed)
            .count()
    }

    /// Closes every open connection, as a server restart does (new
    /// connections are accepted as before).
    pub fn drop_connections(&self) {
        self.shared.kill.send_modify(|n| *n += 1);
    }

    /// Waits until `condition` holds, at most `limit`; whether it did.
    pub async fn wait_until(&self, limit: Duration, condition: impl Fn(&Fake) -> bool) -> bool {
        let mut changes = self.shared.changed.subscribe();
        let waited = tokio::time::timeout(limit, async {
            loop {
                changes.borrow_and_update();
                if condition(self) {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        waited.is_ok()
    }
}

/// A fake with default options; its address.
pub async fn start() -> SocketAddr {
    start_with(FakeOptions::default()).await.addr
}

pub async fn start_with(options: FakeOptions) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake backend");
    let addr = listener.local_addr().expect("fake backend address");
    let shared = Arc::new(Shared {
        options,
        log: Arc::new(Mutex::new(Vec::new())),
        records: Mutex::new(Records::default()),
        changed: watch::channel(0).0,
        kill: watch::channel(0).0,
    });
    let accepting = shared.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let id = {
                let mut records = accepting.records();
                records.next_conn += 1;
                let id = records.next_conn;
                records.conns.insert(
                    id,
                    ConnRecord {
                        id,
                        ..ConnRecord::default()
                    },
                );
                id
            };
            let shared = accepting.clone();
            tokio::spawn(async move {
                let mut conn = Connection::new(id, shared.clone());
                conn.serve(tcp).await;
                let open = conn.trancount > 0;
                shared.update(id, |r| {
                    r.closed = true;
                    r.closed_in_transaction = open;
                });
            });
        }
    });
    Fake {
        addr,
        log: shared.log.clone(),
        shared,
    }
}

/// What to do with a reply.
enum Reply {
    /// One whole message.
    Message(Vec<u8>),
    /// One packet without EOM, then keep serving (the response never ends
    /// unless an ATTENTION comes).
    Stall(Vec<u8>),
    /// One packet without EOM, then close.
    Die(Vec<u8>),
    /// One whole message, then close.
    Final(Vec<u8>),
    Nothing,
}

/// One server session: its handles and transaction.
struct Connection {
    id: u64,
    shared: Arc<Shared>,
    handles: HashMap<i32, String>,
    next_handle: i32,
    trancount: u32,
    descriptor: u64,
}

impl Connection {
    fn new(id: u64, shared: Arc<Shared>) -> Connection {
        Connection {
            id,
            shared,
            handles: HashMap::new(),
            next_handle: 1,
            trancount: 0,
            descriptor: 0,
        }
    }

    fn answer(&self) -> i32 {
        self.shared.options.answer
    }

    async fn serve(&mut self, tcp: TcpStream) {
        let (read, mut write) = tcp.into_split();
        let mut reader = PacketReader::new(read);
        let mut kill = self.shared.kill.subscribe();
        kill.borrow_and_update();
        loop {
            let request = tokio::select! {
                request = read_request(&mut reader) => request,
                _ = kill.changed() => None,
            };
            let Some((ty, status, payload)) = request else {
                return;
            };
            let reply = self.reply(ty, status, &payload).await;
            let (bytes, eom, close) = match reply {
                Reply::Message(b) => (b, true, false),
                Reply::Final(b) => (b, true, true),
                Reply::Stall(b) => (b, false, false),
                Reply::Die(b) => (b, false, true),
                Reply::Nothing => continue,
            };
            if send(&mut write, &bytes, eom).await.is_err() || close {
                return;
            }
        }
    }

    async fn reply(&mut self, ty: PacketType, status: u8, payload: &[u8]) -> Reply {
        if ty == PacketType::PRELOGIN {
            return Reply::Message(prelogin_reply());
        }
        if ty == PacketType::LOGIN7 {
            return self.login(payload).await;
        }
        if ty == PacketType::ATTENTION {
            if self.shared.options.ignore_attention {
                return Reply::Nothing;
            }
            return Reply::Message(done(DoneKind::Done, DoneStatus::ATTN, 0, 0));
        }
        let mut out = Vec::new();
        let reset = Status::RESET_CONNECTION.0;
        let skip_tran = Status::RESET_CONNECTION_SKIP_TRAN.0;
        if status & (reset | skip_tran) != 0 {
            // sp_reset_connection: a full reset rolls back an open
            // transaction; RESETCONNECTIONSKIPTRAN keeps it [MS-TDS 2.2.3.1.2].
            let rolled_back = status & reset != 0 && self.trancount > 0;
            if rolled_back {
                self.trancount = 0;
            }
            // Either reset frees the connection's prepared handles. The log
            // shows it where SQL Server's profiler would.
            self.handles.clear();
            self.shared.log_statement(self.id, RESET_IN_LOG);
            self.shared.update(self.id, |r| {
                r.resets += 1;
                r.handles.clear();
                if rolled_back {
                    r.reset_rollbacks += 1;
                    r.in_transaction = false;
                }
            });
            EnvChange::ResetConnectionAck.encode(&mut out);
        }
        let body = match ty {
            PacketType::SQL_BATCH => {
                let text = sql_batch_text(payload).unwrap_or_else(|_| lossy_utf16(payload));
                match self.batch(&text) {
                    Reply::Message(body) => body,
                    other => return other,
                }
            }
            PacketType::RPC => self.rpc_request(payload),
            PacketType::TRANSACTION_MANAGER => self.transaction_manager(payload),
            _ => return Reply::Final(error_and_done(0, 16, "unexpected packet type")),
        };
        out.extend_from_slice(&body);
        Reply::Message(out)
    }

    async fn login(&mut self, payload: &[u8]) -> Reply {
        let login = Login7::decode(payload).ok();
        let database = login
            .as_ref()
            .map(|l| l.database.clone())
            .unwrap_or_default();
        self.shared.update(self.id, |r| {
            r.database.clone_from(&database);
            if let Some(login) = &login {
                r.user.clone_from(&login.username);
                r.application.clone_from(&login.app_name);
                r.host.clone_from(&login.hostname);
            }
        });
        if database.eq_ignore_ascii_case("nope") {
            // SQL Server refuses, then closes the connection.
            let message = format!(
                "Cannot open database \"{database}\" requested by the login. The login failed."
            );
            return Reply::Final(error_and_done(CANNOT_OPEN_DATABASE, 11, &message));
        }
        if database.eq_ignore_ascii_case("slow") {
            tokio::time::sleep(self.shared.options.slow_login).await;
        }
        self.shared.update(self.id, |r| r.logged_in = true);
        Reply::Message(login_reply())
    }

    /// A batch: statements separated by `;`, each answered in turn.
    fn batch(&mut self, text: &str) -> Reply {
        let answer = self.answer();
        if text.contains(DIE_BETWEEN_ROWS) {
            return Reply::Die([column_metadata(), row(1), row(2)].concat());
        }
        if text.contains(DIE_MID_ROW) {
            let mut partial = column_metadata();
            partial.extend_from_slice(&row(1)[..3]);
            return Reply::Die(partial);
        }
        if text.contains(STALL_MID_RESULT) {
            self.shared.log_statement(self.id, text);
            return Reply::Stall([column_metadata(), row(answer)].concat());
        }
        if text.contains(MALFORMED_RESPONSE) {
            self.shared.log_statement(self.id, text);
            return Reply::Message(
                [
                    column_metadata(),
                    row(answer),
                    vec![UNDEFINED_TOKEN, 0, 0, 0, 0],
                    done(DoneKind::Done, DoneStatus::COUNT, 0xC1, 1),
                ]
                .concat(),
            );
        }
        let statements: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if statements.is_empty() {
            return Reply::Message(done(DoneKind::Done, DoneStatus::FINAL, 0, 0));
        }
        let mut out = Vec::new();
        for (i, sql) in statements.iter().enumerate() {
            let more = i + 1 < statements.len();
            out.extend(self.statement(sql, DoneKind::Done, more));
        }
        Reply::Message(out)
    }

    /// Runs one statement: its tokens, ending with a DONE of `kind`.
    fn statement(&mut self, sql: &str, kind: DoneKind, more: bool) -> Vec<u8> {
        self.shared.log_statement(self.id, sql);
        let more = if more {
            DoneStatus::MORE
        } else {
            DoneStatus::FINAL
        };
        let upper = sql.trim().to_uppercase();
        let mut out = Vec::new();
        let words: Vec<&str> = upper.split_whitespace().collect();
        match words.as_slice() {
            ["BEGIN", "TRAN" | "TRANSACTION", ..] => {
                if self.trancount == 0 {
                    self.descriptor += 1;
                    let descriptor = (self.id << 32) | self.descriptor;
                    EnvChange::BeginTransaction { descriptor }.encode(&mut out);
                    self.shared.update(self.id, |r| r.in_transaction = true);
                }
                self.trancount += 1;
                out.extend(done(kind, more, 0xD4, 0));
            }
            ["COMMIT", ..] => {
                if self.trancount == 0 {
                    return no_transaction(3902, "COMMIT", kind);
                }
                self.trancount -= 1;
                if self.trancount == 0 {
                    self.end_transaction(&mut out, true);
                }
                out.extend(done(kind, more, 0xD5, 0));
            }
            ["ROLLBACK", ..] => {
                if self.trancount == 0 {
                    return no_transaction(3903, "ROLLBACK", kind);
                }
                self.end_transaction(&mut out, false);
                out.extend(done(kind, more, 0xD6, 0));
            }
            ["IF", "@@TRANCOUNT", ">", "0", "ROLLBACK", ..] => {
                if self.trancount > 0 {
                    self.end_transaction(&mut out, false);
                    self.shared.update(self.id, |r| r.trancount_rollbacks += 1);
                }
                out.extend(done(kind, more, 0xD6, 0));
            }
            ["SELECT", ..] => {
                out.extend(column_metadata());
                out.extend(row(self.answer()));
                out.extend(done(kind, more.with(DoneStatus::COUNT), 0xC1, 1));
            }
            [verb @ ("UPDATE" | "INSERT" | "DELETE"), ..] => {
                let cur_cmd = match *verb {
                    "INSERT" => 0xC3,
                    "DELETE" => 0xC4,
                    _ => 0xC5,
                };
                out.extend(done(kind, more.with(DoneStatus::COUNT), cur_cmd, 1));
            }
            _ => out.extend(done(kind, more, 0, 0)),
        }
        out
    }

    /// ENVCHANGE 9 (commit) or 10 (rollback) with the ending descriptor.
    fn end_transaction(&mut self, out: &mut Vec<u8>, commit: bool) {
        let descriptor = (self.id << 32) | self.descriptor;
        if commit {
            EnvChange::CommitTransaction { descriptor }.encode(out);
        } else {
            EnvChange::RollbackTransaction { descriptor }.encode(out);
        }
        self.trancount = 0;
        self.shared.update(self.id, |r| r.in_transaction = false);
    }

    /// An RPCRequest: one call, or several separated by BatchFlag
    /// [MS-TDS 2.2.6.6]; each call's DONEPROC but the last has DONE_MORE.
    fn rpc_request(&mut self, payload: &[u8]) -> Vec<u8> {
        let Ok((_, body)) = split_all_headers(payload) else {
            return proc_error(0, "fake: RPC without ALL_HEADERS");
        };
        let calls = split_calls(body);
        let mut out = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            let mut reply = self.rpc(call);
            if i + 1 < calls.len() {
                // DONEPROC is the reply's last token: Status follows its type.
                let at = reply.len() - Done::BODY_LEN;
                let status = u16::from_le_bytes([reply[at], reply[at + 1]]) | DoneStatus::MORE.0;
                reply[at..at + 2].copy_from_slice(&status.to_le_bytes());
            }
            out.extend(reply);
        }
        out
    }

    /// One RPC call [MS-TDS 2.2.6.6], answered as SQL Server does: the
    /// statement's tokens (DONEINPROC), RETURNSTATUS, any RETURNVALUE, DONEPROC.
    fn rpc(&mut self, call: &[u8]) -> Vec<u8> {
        let head = match RpcHead::decode_body(call) {
            Ok(head) => head,
            Err(e) => return proc_error(0, &format!("fake: undecodable RPC: {e}")),
        };
        let mut out = Vec::new();
        let mut returned_handle = None;
        match head.procedure.well_known_id() {
            Some(proc_id::SP_PREPARE | proc_id::SP_PREPEXEC) => {
                let Some(sql) = head.sql_text else {
                    return proc_error(8180, "fake: sp_prepare without a statement");
                };
                let handle = self.next_handle;
                self.next_handle += 1;
                self.handles.insert(handle, sql.clone());
                let issued = sql.clone();
                self.shared.update(self.id, |r| {
                    r.handles.insert(handle, issued);
                });
                if head.procedure.well_known_id() == Some(proc_id::SP_PREPEXEC) {
                    out.extend(self.statement(&sql, DoneKind::DoneInProc, true));
                }
                returned_handle = Some(handle);
            }
            Some(proc_id::SP_EXECUTE) => {
                let handle = head.handle.unwrap_or(0);
                let statement = self.handles.get(&handle).cloned();
                self.shared.records().executions.push(Execution {
                    conn: self.id,
                    handle,
                    statement: statement.clone(),
                });
                match statement {
                    Some(sql) => out.extend(self.statement(&sql, DoneKind::DoneInProc, true)),
                    None => return unknown_handle(handle),
                }
            }
            Some(proc_id::SP_UNPREPARE) => {
                let handle = head.handle.unwrap_or(0);
                if self.handles.remove(&handle).is_none() {
                    return unknown_handle(handle);
                }
                self.shared.update(self.id, |r| {
                    r.handles.remove(&handle);
                });
            }
            Some(proc_id::SP_EXECUTESQL) => match head.sql_text {
                Some(sql) => out.extend(self.statement(&sql, DoneKind::DoneInProc, true)),
                None => return proc_error(8144, "fake: sp_executesql without a statement"),
            },
            _ => {
                let name = match &head.procedure {
                    ProcRef::Name(name) => name.clone(),
                    ProcRef::Id(id) => format!("procedure #{id}"),
                };
                self.shared.log_statement(self.id, &format!("EXEC {name}"));
            }
        }
        out.extend_from_slice(&[0x79, 0, 0, 0, 0]); // RETURNSTATUS 0
        if let Some(handle) = returned_handle {
            return_value_int(&mut out, handle);
        }
        out.extend(done(DoneKind::DoneProc, DoneStatus::FINAL, 0xE0, 0));
        out
    }

    /// Transaction Manager requests [MS-TDS 2.2.6.9]: begin, commit and
    /// rollback, answered like the T-SQL statements.
    fn transaction_manager(&mut self, payload: &[u8]) -> Vec<u8> {
        let request = split_all_headers(payload)
            .ok()
            .and_then(|(_, body)| body.get(..2).map(|b| u16::from_le_bytes([b[0], b[1]])));
        let sql = match request {
            Some(5) => "BEGIN TRAN",
            Some(7) => "COMMIT",
            Some(8) => "ROLLBACK",
            _ => return error_and_done(0, 16, "fake: unsupported Transaction Manager request"),
        };
        self.statement(sql, DoneKind::Done, false)
    }
}

/// The calls of an RPCRequest body, split at BatchFlag (0xFF) or
/// NoExecFlag (0xFE). Parameters are stepped over for the types the tests
/// send (INTN, INT4, NVARCHAR, NCHAR); past any other type the rest is
/// taken as one call.
fn split_calls(body: &[u8]) -> Vec<&[u8]> {
    let mut calls = Vec::new();
    let mut start = 0;
    let mut at = 0;
    let byte = |i: usize| body.get(i).copied();
    let u16_at = |i: usize| body.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let call_head = |at: &mut usize| -> Option<()> {
        let name = u16_at(*at)?;
        *at += 2 + if name == 0xFFFF {
            2
        } else {
            2 * usize::from(name)
        };
        *at += 2; // option flags
        Some(())
    };
    if call_head(&mut at).is_none() {
        return vec![body];
    }
    loop {
        match byte(at) {
            None => {
                calls.push(&body[start..]);
                return calls;
            }
            Some(0xFF | 0xFE) => {
                calls.push(&body[start..at]);
                at += 1;
                start = at;
                if call_head(&mut at).is_none() {
                    calls.push(&body[start..]);
                    return calls;
                }
            }
            Some(name) => {
                at += 1 + 2 * usize::from(name) + 1; // name, status
                let skipped = match byte(at) {
                    Some(0x26) => byte(at + 2).map(|len| at + 3 + usize::from(len)),
                    Some(0x38) => Some(at + 5),
                    Some(0xE7 | 0xEF) => u16_at(at + 1).and_then(|max| {
                        let value = at + 8;
                        if max == 0xFFFF {
                            let mut i = value + 8;
                            loop {
                                let b = body.get(i..i + 4)?;
                                let chunk = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
                                i += 4 + chunk;
                                if chunk == 0 {
                                    return Some(i);
                                }
                            }
                        }
                        match u16_at(value)? {
                            0xFFFF => Some(value + 2),
                            len => Some(value + 2 + usize::from(len)),
                        }
                    }),
                    _ => None,
                };
                match skipped {
                    Some(next) if next <= body.len() => at = next,
                    _ => {
                        calls.push(&body[start..]);
                        return calls;
                    }
                }
            }
        }
    }
}

/// Reads one request message: its type, its first packet's status byte and
/// its payload. `None` when the peer closed or sent garbage.
async fn read_request(
    reader: &mut PacketReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<(PacketType, u8, Vec<u8>)> {
    let first: Packet = reader.read_packet().await.ok()?;
    let (ty, status) = (first.ty(), first.status().0);
    let mut payload = first.payload().to_vec();
    let mut eom = first.is_eom();
    while !eom {
        let packet = reader.read_packet().await.ok()?;
        payload.extend_from_slice(packet.payload());
        eom = packet.is_eom();
    }
    Some((ty, status, payload))
}

/// Writes `payload` as a response message; without EOM, as one packet of
/// a message that is never finished.
async fn send(write: &mut OwnedWriteHalf, payload: &[u8], eom: bool) -> std::io::Result<()> {
    let mut out = Vec::new();
    encode_message(
        &mut out,
        PacketType::TABULAR_RESULT,
        Status::NORMAL,
        0,
        payload,
        4096,
    );
    if !eom {
        out[1] = 0; // clear EOM
    }
    write.write_all(&out).await
}

fn lossy_utf16(payload: &[u8]) -> String {
    String::from_utf16_lossy(
        &payload
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect::<Vec<_>>(),
    )
}

fn prelogin_reply() -> Vec<u8> {
    let mut out = Vec::new();
    PreLogin {
        encryption: Some(encryption::NOT_SUP),
        ..PreLogin::default()
    }
    .encode(&mut out);
    out
}

fn login_reply() -> Vec<u8> {
    let mut out = Vec::new();
    LoginAck {
        interface: 1,
        tds_version: 0x7400_0004,
        prog_name: "fake".into(),
        version: [16, 0, 0, 0],
    }
    .encode(&mut out);
    out.extend(done(DoneKind::Done, DoneStatus::FINAL, 0, 0));
    out
}

fn message(number: u32, class: u8, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    ServerMessage {
        number,
        state: 1,
        class,
        message: text.into(),
        server: "fake".into(),
        procedure: String::new(),
        line: 1,
    }
    .encode_error(&mut out);
    out
}

/// ERROR, then DONE with the error bit.
fn error_and_done(number: u32, class: u8, text: &str) -> Vec<u8> {
    let mut out = message(number, class, text);
    out.extend(done(DoneKind::Done, DoneStatus::ERROR, 0, 0));
    out
}

/// An RPC that failed: ERROR, then DONEPROC with the error bit.
fn proc_error(number: u32, text: &str) -> Vec<u8> {
    let mut out = message(number, 16, text);
    out.extend(done(DoneKind::DoneProc, DoneStatus::ERROR, 0xE0, 0));
    out
}

fn unknown_handle(handle: i32) -> Vec<u8> {
    proc_error(
        UNKNOWN_HANDLE,
        &format!("Could not find prepared statement with handle {handle}."),
    )
}

fn no_transaction(number: u32, verb: &str, kind: DoneKind) -> Vec<u8> {
    let mut out = message(
        number,
        16,
        &format!("The {verb} TRANSACTION request has no corresponding BEGIN TRANSACTION."),
    );
    out.extend(done(kind, DoneStatus::ERROR, 0, 0));
    out
}

/// COLMETADATA with one nullable INT column `n` [MS-TDS 2.2.7.4].
fn column_metadata() -> Vec<u8> {
    let mut out = vec![0x81, 1, 0];
    out.extend_from_slice(&0u32.to_le_bytes()); // user type
    out.extend_from_slice(&0x0001u16.to_le_bytes()); // flags: nullable
    out.extend_from_slice(&[0x26, 4]); // INTN(4)
    put_b_varchar(&mut out, "n");
    out
}

fn row(value: i32) -> Vec<u8> {
    let mut out = vec![0xD1, 4];
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// RETURNVALUE [MS-TDS 2.2.7.19] for output parameter 0 (`@handle`):
/// ordinal, unnamed, status 0x01 (output parameter), user type, flags
/// (nullable), INTN(4) and the value.
fn return_value_int(out: &mut Vec<u8>, value: i32) {
    out.extend_from_slice(&[0xAC, 0, 0, 0, 0x01]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0x0001u16.to_le_bytes());
    out.extend_from_slice(&[0x26, 4, 4]);
    out.extend_from_slice(&value.to_le_bytes());
}

fn done(kind: DoneKind, status: DoneStatus, cur_cmd: u16, row_count: u64) -> Vec<u8> {
    let mut out = Vec::new();
    Done {
        kind,
        status,
        cur_cmd,
        row_count,
    }
    .encode(&mut out);
    out
}

/// The INT values of the fake's one-column rows in a response payload, in
/// order: what a raw client reads to learn which server answered.
pub fn answers(payload: &[u8]) -> Vec<i32> {
    let metadata = column_metadata();
    let mut values = Vec::new();
    let mut at = 0;
    while let Some(found) = payload[at..]
        .windows(metadata.len())
        .position(|w| w == metadata.as_slice())
    {
        at += found + metadata.len();
        while payload.get(at..at + 2) == Some(&[0xD1, 4]) {
            let Some(bytes) = payload.get(at + 2..at + 6) else {
                break;
            };
            values.push(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
            at += 6;
        }
    }
    values
}
