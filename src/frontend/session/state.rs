//! What a client session has done that routing must remember: open
//! transactions, settings to replay on other connections, pins, the time
//! of the last write.

use std::time::Instant;

use super::pins::PinSet;
use crate::backend::{Settings, TooManySettings, DATABASE_SETTING, ISOLATION_SETTING};
use crate::classify::{beyond_nested_scope, Class, Classification, Pin, SessionEffect};
use crate::metrics::GaugeGuard;
use crate::router::{PinReason, SessionView};
#[cfg(test)]
use crate::tds::token::env_change::EnvChange;
#[cfg(test)]
use crate::tds::token::walker::TokenEvent;

/// Where a request's SQL runs, which decides how long its effects last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A SQL batch: its effects last for the session.
    Batch,
    /// The statement of an sp_executesql, sp_prepexec or sp_execute RPC: a
    /// nested scope, whose SET options and temp tables end with it
    /// ([`beyond_nested_scope`]).
    Nested,
    /// The statement of an sp_prepare: compiled, not run, so it has no
    /// effect yet (each sp_execute of it has, in a nested scope).
    Compiled,
}

/// What the primary connection needs before anyone else may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnectionCleanup {
    /// It never held pinned state for this session.
    None,
    /// It held pinned state, now ended or cleared: RESETCONNECTION on its
    /// next request before another client uses it.
    Reset,
    /// It holds (or held when the client reset) state a reset does not
    /// undo (`EXECUTE AS`, an application role, an open key, a batch
    /// Sluice could not follow): close it, never pool it.
    Discard,
}

#[derive(Debug, Default)]
pub struct RoutingState {
    /// The backend reported an open transaction (ENVCHANGE 8 without 9/10/17).
    server_transaction: bool,
    /// BEGIN TRAN depth seen in the SQL, for servers that send no ENVCHANGE.
    inferred_depth: u32,
    implicit_transactions: bool,
    strict_isolation: bool,
    /// Active pins. A request's starts are added before it runs; its ends
    /// wait for its response ([`RoutingState::settle`]).
    pins: PinSet,
    /// The pins as they will be if the request in flight succeeds.
    pending: Option<PinSet>,
    /// The primary connection held pins since the last
    /// [`RoutingState::take_connection_cleanup`].
    held_pins: bool,
    /// A client reset cleared pins a reset does not undo.
    discard: bool,
    /// Pin reasons already logged on this client connection (bit per reason).
    logged: u32,
    last_write: Option<Instant>,
    /// The session's settings beyond its login's, in the order the client
    /// last set them, to bring any connection it uses to them.
    settings: Settings,
    /// The database the client logged in to: being there needs no `USE`.
    login_database: String,
    /// Counts this session in `sluice_pinned_sessions` while it has pins.
    pinned: Option<GaugeGuard>,
    /// What the client's LOGIN7 asked for beyond Sluice's own login (its
    /// language): where a client reset returns to.
    login_settings: Settings,
}

impl RoutingState {
    pub fn view<'a>(
        &self,
        user: &'a str,
        application: &'a str,
        database: &'a str,
        emulated_open: bool,
    ) -> SessionView<'a> {
        SessionView {
            user,
            application,
            database,
            in_transaction: self.in_transaction() || emulated_open,
            implicit_transactions: self.implicit_transactions,
            strict_isolation: self.strict_isolation,
            pin: self.pins.first(),
            last_write: self.last_write,
            current_replica: None,
            procedures: None,
        }
    }

    pub fn in_transaction(&self) -> bool {
        self.server_transaction || self.inferred_depth > 0
    }

    pub fn new(login_database: &str) -> Self {
        RoutingState {
            login_database: login_database.to_string(),
            ..RoutingState::default()
        }
    }

    /// The language the client's LOGIN7 named: part of its session from the
    /// start and after every reset, as on SQL Server.
    pub fn set_login_language(&mut self, language: &str) {
        let statement = format!("SET LANGUAGE [{}]", language.replace(']', "]]"));
        self.remember("LANGUAGE", statement);
        self.login_settings = self.settings.clone();
    }

    /// The settings any connection serving this session must carry.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The server says the session is now in `database` (ENVCHANGE): a
    /// connection serving it must be there too.
    pub fn observe_database(&mut self, database: &str) {
        if database.eq_ignore_ascii_case(&self.login_database) {
            self.settings.remove(DATABASE_SETTING);
        } else {
            let statement = format!("USE [{}]", database.replace(']', "]]"));
            self.remember(DATABASE_SETTING, statement);
        }
    }

    /// Puts back settings from before a request whose outcome is unknown.
    pub fn restore_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// The reason of the oldest active pin.
    pub fn pin(&self) -> Option<PinReason> {
        self.pins.first()
    }

    /// Active pins, oldest first.
    #[cfg(test)]
    pub fn pins(&self) -> &PinSet {
        &self.pins
    }

    /// State on the primary connection that cannot move to another one: an
    /// open transaction (from the server or the SQL) or a pin. Losing that
    /// connection loses the state; while it holds, the session must keep
    /// the connection.
    pub fn has_unmovable_state(&self) -> bool {
        self.in_transaction() || !self.pins.is_empty()
    }

    /// Holds the session on the primary until the client resets it.
    pub fn pin_to_primary(&mut self, reason: PinReason) {
        self.start_pin(&Pin::new(reason));
    }

    /// Records what a request is about to do (it is applied before the
    /// response: a failed SET or BEGIN errs on the side of the primary).
    /// Pins start now; the ends wait for [`RoutingState::settle`], since
    /// only a request that succeeded proves them. Call once per request.
    #[cfg(test)]
    pub fn apply(&mut self, classification: &Classification, scope: Scope, now: Instant) {
        self.apply_as(classification, classification.class, scope, now);
    }

    /// Like [`apply`](Self::apply), with the batch counted as `class`: a
    /// call of a procedure the catalog proved read-only is a read, not a
    /// write that holds the session's reads on the primary.
    pub fn apply_as(
        &mut self,
        classification: &Classification,
        class: Class,
        scope: Scope,
        now: Instant,
    ) {
        if matches!(class, Class::Write | Class::Unknown) {
            self.last_write = Some(now);
        }
        match scope {
            Scope::Batch => self.apply_effects(&classification.effects),
            Scope::Nested => self.apply_effects(&beyond_nested_scope(&classification.effects)),
            Scope::Compiled => self.apply_effects(&[]),
        }
    }

    /// Records the effects of a request that has no SQL text (an API cursor
    /// call), as [`RoutingState::apply`] does. Call once per request.
    pub fn apply_effects(&mut self, effects: &[SessionEffect]) {
        self.pending = Some(self.pins.clone());
        for effect in effects {
            match effect {
                SessionEffect::Pin(pin) => self.start_pin(pin),
                SessionEffect::Unpin(pin) => self.end_pin(pin),
                SessionEffect::SetOption { option, .. } => {
                    // A literal value of a tracked option makes it known again.
                    self.end_pin(&Pin::named(PinReason::UntrackedSetting, option.clone()));
                    self.apply_effect(effect);
                }
                other => self.apply_effect(other),
            }
        }
    }

    /// After the response to the request last applied: if it ran cleanly
    /// (no error, not cancelled, read to its end) the pins it ended are
    /// gone; otherwise they are kept, as nothing proves them ended.
    pub fn settle(&mut self, ran_cleanly: bool) {
        let Some(after) = self.pending.take() else {
            return;
        };
        if ran_cleanly {
            for pin in self.pins.ended_in(&after) {
                tracing::debug!(pin = %pin, "pin ended");
            }
            self.pins = after;
            self.track_pinned();
        }
    }

    /// Keeps the pinned-sessions gauge in step with the pins.
    fn track_pinned(&mut self) {
        match (self.pins.is_empty(), self.pinned.is_some()) {
            (false, false) => {
                let gauge = metrics::gauge!(crate::metrics::PINNED_SESSIONS);
                self.pinned = Some(GaugeGuard::new(gauge));
            }
            (true, true) => self.pinned = None,
            _ => {}
        }
    }

    /// Counts a transaction when the session enters one.
    fn track_transaction(&self, was_open: bool) {
        if !was_open && self.in_transaction() {
            metrics::counter!(crate::metrics::TRANSACTIONS).increment(1);
        }
    }

    /// Starts `pin` now, and in the pins the request in flight will leave.
    fn start_pin(&mut self, pin: &Pin) {
        self.pins.start(pin);
        if let Some(after) = &mut self.pending {
            after.start(pin);
        }
        metrics::counter!(crate::metrics::PINS, "reason" => pin.reason.label()).increment(1);
        self.track_pinned();
        self.held_pins = true;
        let bit = 1u32 << (pin.reason as u32);
        if self.logged & bit == 0 {
            self.logged |= bit;
            tracing::info!(reason = pin.reason.as_str(), pin = %pin, "session pinned to the primary");
        }
    }

    /// Ends `pin` in the pins the request in flight will leave if it succeeds.
    fn end_pin(&mut self, pin: &Pin) {
        if let Some(after) = &mut self.pending {
            after.end(pin);
        }
    }

    /// What the primary connection needs before it is returned to the pool
    /// or used for another client, and forgets it: [`ConnectionCleanup::Discard`]
    /// while a pin a reset does not undo is active (or was when the client
    /// reset), [`ConnectionCleanup::Reset`] when the connection held any pin
    /// since the last call, else [`ConnectionCleanup::None`]. A connection
    /// that still has active pins (see [`RoutingState::has_unmovable_state`])
    /// must not be released at all; ask once the session lets it go.
    pub fn take_connection_cleanup(&mut self) -> ConnectionCleanup {
        let cleanup = self.connection_cleanup();
        self.discard = false;
        self.held_pins = !self.pins.is_empty();
        cleanup
    }

    /// [`RoutingState::take_connection_cleanup`] without forgetting.
    pub fn connection_cleanup(&self) -> ConnectionCleanup {
        if self.discard || self.pins.survives_reset() {
            ConnectionCleanup::Discard
        } else if self.held_pins || !self.pins.is_empty() {
            ConnectionCleanup::Reset
        } else {
            ConnectionCleanup::None
        }
    }

    /// Writes by other means than SQL text (bulk load, Transaction Manager,
    /// ...). Such a request ends no pin.
    pub fn record_write(&mut self, now: Instant) {
        self.last_write = Some(now);
        self.pending = None;
    }

    fn apply_effect(&mut self, effect: &SessionEffect) {
        match effect {
            SessionEffect::BeginTransaction => {
                let was_open = self.in_transaction();
                self.inferred_depth += 1;
                self.track_transaction(was_open);
            }
            SessionEffect::CommitTransaction => {
                self.inferred_depth = self.inferred_depth.saturating_sub(1)
            }
            SessionEffect::RollbackTransaction => self.inferred_depth = 0,
            SessionEffect::ImplicitTransactions(on) => self.implicit_transactions = *on,
            SessionEffect::IsolationLevel(level) => {
                self.strict_isolation =
                    matches!(level.as_str(), "SERIALIZABLE" | "REPEATABLE READ");
                self.remember(
                    ISOLATION_SETTING,
                    format!("SET TRANSACTION ISOLATION LEVEL {level}"),
                );
            }
            SessionEffect::UseDatabase(db) => self.observe_database(db),
            SessionEffect::SetOption { option, statement } => {
                self.remember(option, statement.clone())
            }
            SessionEffect::Pin(_) | SessionEffect::Unpin(_) => {}
        }
    }

    /// Keeps the latest statement per setting, in the order they were last
    /// set: options overlap (`SET LANGUAGE` also sets DATEFORMAT and
    /// DATEFIRST, `ANSI_DEFAULTS` sets seven others, `ANSI_NULL_DFLT_ON`
    /// clears `ANSI_NULL_DFLT_OFF`), and replaying in that order ends where
    /// the client's own sequence ended.
    fn remember(&mut self, key: &str, statement: String) {
        if let Err(TooManySettings) = self.settings.set(key, &statement) {
            tracing::warn!(
                setting = key,
                "too many session settings; pinning to the primary"
            );
            self.pin_to_primary(PinReason::TooManySettings);
        }
    }

    /// Transaction state from the server's own word (ENVCHANGE 8/9/10/17).
    pub fn observe_transaction(&mut self, open: bool) {
        let was_open = self.in_transaction();
        self.server_transaction = open;
        if !open {
            self.inferred_depth = 0;
        }
        self.track_transaction(was_open);
    }

    /// Transaction state and database from the server's own tokens.
    #[cfg(test)]
    pub fn observe(&mut self, event: &TokenEvent) -> Option<String> {
        let TokenEvent::EnvChange(change) = event else {
            return None;
        };
        if let Some(open) = change.transaction_state() {
            self.observe_transaction(open);
        }
        match change {
            EnvChange::Database { new, .. } => Some(new.clone()),
            _ => None,
        }
    }

    /// The client reset its connection (RESETCONNECTION): a new logical
    /// session. What the primary connection needs before another client
    /// uses it is kept ([`RoutingState::take_connection_cleanup`]): the
    /// client's reset reaches only the connection its next request goes to,
    /// and it does not undo every pin. Pin reasons already logged stay
    /// logged: once per client connection.
    pub fn reset(&mut self) {
        let login_settings = std::mem::take(&mut self.login_settings);
        let next = RoutingState {
            held_pins: self.held_pins || !self.pins.is_empty(),
            discard: self.discard || self.pins.survives_reset(),
            logged: self.logged,
            settings: login_settings.clone(),
            login_settings,
            login_database: std::mem::take(&mut self.login_database),
            ..RoutingState::default()
        };
        *self = next;
    }

    /// RESETCONNECTIONSKIPTRAN: a new logical session that keeps the open
    /// transaction [MS-TDS 2.2.3.1.2] (.NET TransactionScope reuses pooled
    /// connections this way).
    pub fn reset_keeping_transaction(&mut self) {
        let (server, inferred) = (self.server_transaction, self.inferred_depth);
        self.reset();
        self.server_transaction = server;
        self.inferred_depth = inferred;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, Flags};
    use crate::frontend::session::request::CursorCall;

    fn classified(class: Class, effects: Vec<SessionEffect>) -> Classification {
        Classification {
            class,
            class_if_unlisted_read_only: class,
            unlisted_procedures: vec![],
            reason: String::new(),
            flags: Flags::NONE,
            procedures: vec![],
            temp_tables: vec![],
            effects,
            tables: Default::default(),
            volatile: None,
        }
    }

    /// Runs `sql` as a batch that succeeds.
    fn run(s: &mut RoutingState, sql: &str) {
        run_in(s, sql, Scope::Batch, true);
    }

    fn run_in(s: &mut RoutingState, sql: &str, scope: Scope, ran_cleanly: bool) {
        let c = Classifier::new(0, &[]).classify(sql);
        s.apply(&c, scope, Instant::now());
        s.settle(ran_cleanly);
    }

    #[test]
    fn the_pinned_sessions_gauge_and_the_counters_follow_the_session() {
        let recorder = crate::testing::TestRecorder::default();
        let pinned = || recorder.value("sluice_pinned_sessions{}", true);
        metrics::with_local_recorder(&recorder, || {
            let mut s = RoutingState::default();
            run(&mut s, "CREATE TABLE #t (n INT)");
            assert_eq!(pinned(), 1.0);
            run(&mut s, "CREATE TABLE #u (n INT)");
            assert_eq!(pinned(), 1.0, "one session, however many pins");
            run(&mut s, "DROP TABLE #t; DROP TABLE #u");
            assert_eq!(pinned(), 0.0);
            run(&mut s, "CREATE TABLE #t (n INT)");
            s.reset();
            assert_eq!(pinned(), 0.0, "a client reset ends the pins");
            run(&mut s, "CREATE TABLE #t (n INT)");
            drop(s);
            assert_eq!(pinned(), 0.0, "a session that ends is no longer pinned");

            let mut s = RoutingState::default();
            run(&mut s, "BEGIN TRANSACTION");
            s.observe_transaction(true);
            run(&mut s, "COMMIT");
            s.observe_transaction(false);
            s.observe_transaction(true);
        });
        let pins = recorder.value("sluice_pins_total{reason=temp_table}", false);
        assert_eq!(pins, 4.0);
        // The BEGIN seen in the SQL and the server's word are one
        // transaction; the server's later one is another.
        assert_eq!(recorder.value("sluice_transactions_total{}", false), 2.0);
    }

    #[test]
    fn transactions_from_sql_and_from_the_server() {
        let mut s = RoutingState::default();
        let now = Instant::now();
        let begin = classified(
            Class::TransactionControl,
            vec![SessionEffect::BeginTransaction],
        );
        s.apply(&begin, Scope::Batch, now);
        assert!(s.in_transaction());
        let commit = classified(
            Class::TransactionControl,
            vec![SessionEffect::CommitTransaction],
        );
        s.apply(&commit, Scope::Batch, now);
        assert!(!s.in_transaction());
        s.observe(&TokenEvent::EnvChange(EnvChange::BeginTransaction {
            descriptor: 9,
        }));
        assert!(s.in_transaction());
        s.observe(&TokenEvent::EnvChange(EnvChange::RollbackTransaction {
            descriptor: 9,
        }));
        assert!(!s.in_transaction());
    }

    #[test]
    fn settings_replay_latest_value_in_last_set_order() {
        let mut s = RoutingState::default();
        run(&mut s, "SET DATEFORMAT dmy");
        run(&mut s, "SET LANGUAGE us_english");
        run(&mut s, "SET DATEFORMAT ymd");
        // LANGUAGE resets DATEFORMAT: replaying in first-set order would
        // end with mdy.
        assert_eq!(replay(&s), "SET LANGUAGE us_english;\nSET DATEFORMAT ymd");
        run(&mut s, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
        assert!(s.view("", "", "", false).strict_isolation);
        s.reset();
        assert_eq!(replay(&s), "");
    }

    /// What brings a fresh connection to the session's settings.
    fn replay(s: &RoutingState) -> String {
        crate::backend::plan_settings(&Settings::default(), s.settings())
            .map(|plan| plan.batch)
            .unwrap_or_default()
    }

    #[test]
    fn being_in_the_login_database_needs_no_use() {
        let mut s = RoutingState::new("Sales");
        s.observe_database("reports");
        assert_eq!(s.settings().get("USE"), Some("USE [reports]"));
        s.observe_database("sales");
        assert!(s.settings().is_empty(), "back in the login database");
        s.observe_database("odd]name");
        s.reset();
        assert!(s.settings().is_empty());
        s.observe_database("SALES");
        assert!(
            s.settings().is_empty(),
            "the login database survives a reset"
        );
    }

    #[test]
    fn the_login_language_is_where_a_reset_returns() {
        let mut s = RoutingState::new("master");
        s.set_login_language("Français");
        run(&mut s, "SET LANGUAGE us_english");
        assert_eq!(
            s.settings().get("LANGUAGE"),
            Some("SET LANGUAGE us_english")
        );
        s.reset();
        assert_eq!(
            s.settings().get("LANGUAGE"),
            Some("SET LANGUAGE [Français]")
        );
    }

    #[test]
    fn writes_are_remembered() {
        let mut s = RoutingState::default();
        let now = Instant::now();
        s.apply(&classified(Class::Write, vec![]), Scope::Batch, now);
        assert_eq!(s.view("", "", "", false).last_write, Some(now));
    }

    /// Each pin: what starts it, what provably ends it.
    #[test]
    fn each_pin_starts_and_ends() {
        for (start, end, reason) in [
            ("CREATE TABLE #t (a INT)", "DROP TABLE #t", PinReason::TempTable),
            ("SELECT a INTO #t FROM x", "DROP TABLE IF EXISTS #t", PinReason::TempTable),
            (
                "CREATE TABLE #t (a INT)",
                "IF OBJECT_ID('tempdb..#t') IS NOT NULL DROP TABLE #t",
                PinReason::TempTable,
            ),
            ("CREATE PROCEDURE #p AS SELECT 1", "DROP PROCEDURE #p", PinReason::TempProcedure),
            ("DECLARE c CURSOR FOR SELECT 1", "DEALLOCATE c", PinReason::Cursor),
            (
                "EXEC sp_getapplock @Resource = 'r', @LockMode = 'Exclusive', @LockOwner = 'Session'",
                "EXEC sp_releaseapplock @Resource = 'r', @LockOwner = 'Session'",
                PinReason::SessionLock,
            ),
            ("SET IDENTITY_INSERT dbo.t ON", "SET IDENTITY_INSERT dbo.t OFF", PinReason::IdentityInsert),
            ("EXECUTE AS USER = 'u'", "REVERT", PinReason::ExecuteAs),
            ("EXEC sp_setapprole 'r', 'pw'", "EXEC sp_unsetapprole @cookie", PinReason::AppRole),
            (
                "OPEN SYMMETRIC KEY k DECRYPTION BY CERTIFICATE c",
                "CLOSE SYMMETRIC KEY k",
                PinReason::OpenKey,
            ),
            (
                "EXEC sp_xml_preparedocument @h OUTPUT, @x",
                "EXEC sp_xml_removedocument @h",
                PinReason::XmlDocument,
            ),
            ("SET SHOWPLAN_XML ON", "SET SHOWPLAN_XML OFF", PinReason::UntrackedSetting),
            ("SET ROWCOUNT @n", "SET ROWCOUNT 0", PinReason::UntrackedSetting),
        ] {
            let mut s = RoutingState::default();
            run(&mut s, start);
            assert_eq!(s.pin(), Some(reason), "{start}");
            assert!(s.has_unmovable_state());
            assert_eq!(s.view("", "", "", false).pin, Some(reason));
            run(&mut s, end);
            assert_eq!(s.pin(), None, "{start} / {end}: {:?}", s.pins());
            assert!(!s.has_unmovable_state());
            assert_eq!(
                s.take_connection_cleanup(),
                ConnectionCleanup::Reset,
                "{start}: the connection held a pin"
            );
            assert_eq!(s.take_connection_cleanup(), ConnectionCleanup::None);
        }
    }

    #[test]
    fn some_pins_hold_until_reset() {
        for sql in [
            "SET CONTEXT_INFO 0x01",
            "EXEC sp_set_session_context @key = N'tenant', @value = 42",
            "EXEC sp_getapplock @Resource = @r, @LockMode = 'Exclusive', @LockOwner = 'Session'",
            "EXECUTE AS USER = 'u' WITH NO REVERT",
            "SET FIPS_FLAGGER 'FULL'",
        ] {
            let mut s = RoutingState::default();
            run(&mut s, sql);
            assert!(s.pin().is_some(), "{sql}");
            for end in [
                "REVERT",
                "EXEC sp_releaseapplock @Resource = 'r', @LockOwner = 'Session'",
                "SET CONTEXT_INFO 0x",
            ] {
                run(&mut s, end);
            }
            assert!(s.pin().is_some(), "{sql}: nothing but a reset ends it");
            s.reset();
            assert_eq!(s.pin(), None);
            assert_ne!(s.take_connection_cleanup(), ConnectionCleanup::None);
        }
    }

    #[test]
    fn several_pins_end_independently() {
        let mut s = RoutingState::default();
        run(&mut s, "CREATE TABLE #a (x INT); CREATE TABLE #b (x INT)");
        run(&mut s, "DECLARE c CURSOR GLOBAL FOR SELECT 1; OPEN c");
        run(&mut s, "DROP TABLE #a");
        assert_eq!(s.pin(), Some(PinReason::TempTable));
        run(&mut s, "DROP TABLE #b");
        assert_eq!(s.pin(), Some(PinReason::Cursor));
        run(&mut s, "CLOSE c");
        assert_eq!(
            s.pin(),
            Some(PinReason::Cursor),
            "a closed cursor still exists"
        );
        run(&mut s, "DEALLOCATE c");
        assert_eq!(s.pin(), None);
    }

    #[test]
    fn starts_count_at_once_and_ends_only_after_a_clean_response() {
        let mut s = RoutingState::default();
        let c = Classifier::new(0, &[]).classify("CREATE TABLE #t (a INT)");
        s.apply(&c, Scope::Batch, Instant::now());
        assert!(s.has_unmovable_state(), "pinned before the response");
        s.settle(false);
        assert!(
            s.has_unmovable_state(),
            "a failed CREATE may have created it"
        );
        run_in(&mut s, "DROP TABLE #t", Scope::Batch, false);
        assert!(s.has_unmovable_state(), "a failed DROP proves nothing");
        // A request that was never answered leaves its ends behind.
        let drop = Classifier::new(0, &[]).classify("DROP TABLE #t");
        s.apply(&drop, Scope::Batch, Instant::now());
        run(&mut s, "SELECT 1");
        assert!(s.has_unmovable_state());
        // Created and dropped in one batch: nothing left.
        let mut s = RoutingState::default();
        run(
            &mut s,
            "CREATE TABLE #t (a INT); INSERT INTO #t VALUES (1); DROP TABLE #t",
        );
        assert_eq!(s.pin(), None);
        assert_eq!(s.take_connection_cleanup(), ConnectionCleanup::Reset);
    }

    #[test]
    fn nested_scopes_keep_only_what_outlasts_them() {
        let mut s = RoutingState::default();
        run_in(
            &mut s,
            "CREATE TABLE #t (a INT); SET NOCOUNT ON",
            Scope::Nested,
            true,
        );
        assert_eq!(s.pin(), None, "sp_executesql's temp table ends with it");
        assert_eq!(replay(&s), "", "and so do its SET options");
        run_in(
            &mut s,
            "SET SHOWPLAN_XML ON; SET IDENTITY_INSERT t ON",
            Scope::Nested,
            true,
        );
        assert_eq!(s.pin(), None);
        run_in(&mut s, "DECLARE c CURSOR FOR SELECT 1", Scope::Nested, true);
        assert_eq!(
            s.pin(),
            Some(PinReason::Cursor),
            "a global cursor outlasts it"
        );
        run(&mut s, "DEALLOCATE c; CREATE TABLE #t (a INT)");
        run_in(&mut s, "DROP TABLE #t", Scope::Compiled, true);
        assert_eq!(
            s.pin(),
            Some(PinReason::TempTable),
            "sp_prepare runs nothing"
        );
        run_in(&mut s, "DROP TABLE #t", Scope::Nested, true);
        assert_eq!(s.pin(), None, "it can drop the caller's temp table");
    }

    #[test]
    fn impersonation_nests_and_must_be_discarded_while_active() {
        let mut s = RoutingState::default();
        run(&mut s, "EXECUTE AS USER = 'a'");
        run(&mut s, "EXECUTE AS LOGIN = 'b'");
        run(&mut s, "REVERT");
        assert_eq!(s.pin(), Some(PinReason::ExecuteAs));
        assert_eq!(s.connection_cleanup(), ConnectionCleanup::Discard);
        run(&mut s, "REVERT");
        assert_eq!(s.pin(), None);
        assert_eq!(s.take_connection_cleanup(), ConnectionCleanup::Reset);
        // A client reset clears the pin but not the server's context.
        run(&mut s, "EXEC sp_setapprole 'r', 'pw'");
        s.reset();
        assert_eq!(s.pin(), None);
        assert_eq!(s.take_connection_cleanup(), ConnectionCleanup::Discard);
        assert_eq!(s.take_connection_cleanup(), ConnectionCleanup::None);
    }

    #[test]
    fn api_cursors_are_counted_by_calls() {
        let mut s = RoutingState::default();
        let call = |s: &mut RoutingState, call: CursorCall| {
            s.apply_effects(&call.effects());
            s.settle(true);
        };
        call(&mut s, CursorCall::Open);
        call(&mut s, CursorCall::PrepareOpen);
        call(&mut s, CursorCall::Use);
        call(&mut s, CursorCall::Close);
        assert_eq!(s.pin(), Some(PinReason::ApiCursor));
        call(&mut s, CursorCall::Close);
        assert_eq!(
            s.pin(),
            Some(PinReason::ApiCursor),
            "the prepared plan is left"
        );
        call(&mut s, CursorCall::Unprepare);
        assert_eq!(s.pin(), None);
        // An open that failed still counts: only a reset ends it.
        s.apply_effects(&CursorCall::Open.effects());
        s.settle(false);
        call(&mut s, CursorCall::Close);
        assert_eq!(s.pin(), None, "one open, one close");
    }

    #[test]
    fn too_many_temp_tables_hold_until_reset() {
        let mut s = RoutingState::default();
        let n = super::super::pins::MAX_PINS + 5;
        for i in 0..n {
            run(&mut s, &format!("CREATE TABLE #t{i} (a INT)"));
        }
        for i in 0..n {
            run(&mut s, &format!("DROP TABLE #t{i}"));
        }
        assert_eq!(s.pin(), Some(PinReason::TempTable));
        s.reset();
        assert_eq!(s.pin(), None);
    }

    #[test]
    fn unreadable_responses_and_too_many_settings_pin_until_reset() {
        let mut s = RoutingState::default();
        let c = Classifier::new(0, &[]).classify("CREATE TABLE #t (a INT)");
        s.apply(&c, Scope::Batch, Instant::now());
        s.pin_to_primary(PinReason::UnreadableResponse);
        s.settle(true);
        run(&mut s, "DROP TABLE #t");
        assert_eq!(s.pin(), Some(PinReason::UnreadableResponse));
        let mut s = RoutingState::default();
        for i in 0..=crate::backend::MAX_SETTINGS {
            let set = SessionEffect::SetOption {
                option: format!("OPTION{i}"),
                statement: format!("SET OPTION{i} ON"),
            };
            s.apply(
                &classified(Class::SessionState, vec![set]),
                Scope::Batch,
                Instant::now(),
            );
            s.settle(true);
        }
        assert_eq!(s.pin(), Some(PinReason::TooManySettings));
    }
}
