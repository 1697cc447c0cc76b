//! What a client session has done that routing must remember: open
//! transactions, settings to replay on other connections, pins, the time
//! of the last write.

use std::time::Instant;

use crate::backend::{Settings, TooManySettings, DATABASE_SETTING, ISOLATION_SETTING};
use crate::classify::{Class, Classification, Flags, SessionEffect};
use crate::router::{PinReason, SessionView};
#[cfg(test)]
use crate::tds::token::env_change::EnvChange;
#[cfg(test)]
use crate::tds::token::walker::TokenEvent;

#[derive(Debug, Default)]
pub struct RoutingState {
    /// The backend reported an open transaction (ENVCHANGE 8 without 9/10/17).
    server_transaction: bool,
    /// BEGIN TRAN depth seen in the SQL, for servers that send no ENVCHANGE.
    inferred_depth: u32,
    implicit_transactions: bool,
    strict_isolation: bool,
    pin: Option<PinReason>,
    last_write: Option<Instant>,
    /// The session's settings beyond its login's, to bring any connection
    /// it uses to them.
    settings: Settings,
    /// The database the client logged in to: being there needs no `USE`.
    login_database: String,
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
            pin: self.pin,
            last_write: self.last_write,
            current_replica: None,
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

    /// Whether state only its connection has keeps the session there.
    pub fn is_pinned(&self) -> bool {
        self.pin.is_some()
    }

    #[cfg(test)]
    pub fn pin(&self) -> Option<PinReason> {
        self.pin
    }

    /// State on the primary connection that cannot move to another one: an
    /// open transaction (from the server or the SQL) or a pin. Losing that
    /// connection loses the state.
    pub fn has_unmovable_state(&self) -> bool {
        self.in_transaction() || self.pin.is_some()
    }

    /// Holds the session on the primary until the client resets it; the
    /// first reason stays.
    pub fn pin_to_primary(&mut self, reason: PinReason) {
        if self.pin.is_none() {
            tracing::info!(reason = reason.as_str(), "session pinned to the primary");
            self.pin = Some(reason);
        }
    }

    /// Records what a request is about to do (it is applied before the
    /// response: a failed SET or BEGIN errs on the side of the primary).
    pub fn apply(&mut self, classification: &Classification, now: Instant) {
        if matches!(classification.class, Class::Write | Class::Unknown) {
            self.last_write = Some(now);
        }
        if let Some(pin) = pin_for(classification.flags) {
            self.pin.get_or_insert(pin);
        }
        for effect in &classification.effects {
            self.apply_effect(effect);
        }
    }

    /// Writes by other means than SQL text (RPC to a procedure, bulk load, ...).
    pub fn record_write(&mut self, now: Instant) {
        self.last_write = Some(now);
    }

    fn apply_effect(&mut self, effect: &SessionEffect) {
        match effect {
            SessionEffect::BeginTransaction => self.inferred_depth += 1,
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
        }
    }

    /// Keeps the latest statement per setting.
    fn remember(&mut self, key: &str, statement: String) {
        if let Err(TooManySettings) = self.settings.set(key, &statement) {
            tracing::warn!(
                setting = key,
                "too many session settings; pinning to the primary"
            );
            self.pin.get_or_insert(PinReason::TooManySettings);
        }
    }

    /// Transaction state from the server's own word (ENVCHANGE 8/9/10/17).
    pub fn observe_transaction(&mut self, open: bool) {
        self.server_transaction = open;
        if !open {
            self.inferred_depth = 0;
        }
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

    /// The client reset its connection (RESETCONNECTION): a new logical session.
    pub fn reset(&mut self) {
        let login_database = std::mem::take(&mut self.login_database);
        let login_settings = std::mem::take(&mut self.login_settings);
        *self = RoutingState::new(&login_database);
        self.settings = login_settings.clone();
        self.login_settings = login_settings;
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

fn pin_for(flags: Flags) -> Option<PinReason> {
    if flags.intersects(Flags::CREATES_TEMP_TABLE) {
        Some(PinReason::TempTable)
    } else if flags.contains(Flags::CURSOR) {
        Some(PinReason::Cursor)
    } else if flags.contains(Flags::SESSION_LOCK) {
        Some(PinReason::SessionLock)
    } else if flags.contains(Flags::IDENTITY_INSERT) {
        Some(PinReason::IdentityInsert)
    } else if flags.contains(Flags::CONTEXT_INFO) {
        Some(PinReason::ContextInfo)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(class: Class, flags: Flags, effects: Vec<SessionEffect>) -> Classification {
        Classification {
            class,
            reason: String::new(),
            flags,
            procedures: vec![],
            temp_tables: vec![],
            effects,
        }
    }

    #[test]
    fn transactions_from_sql_and_from_the_server() {
        let mut s = RoutingState::default();
        let now = Instant::now();
        s.apply(
            &classified(
                Class::TransactionControl,
                Flags::NONE,
                vec![SessionEffect::BeginTransaction],
            ),
            now,
        );
        assert!(s.in_transaction());
        s.apply(
            &classified(
                Class::TransactionControl,
                Flags::NONE,
                vec![SessionEffect::CommitTransaction],
            ),
            now,
        );
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
    fn settings_keep_the_latest_value_per_option() {
        let mut s = RoutingState::default();
        let set = |option: &str, statement: &str| SessionEffect::SetOption {
            option: option.into(),
            statement: statement.into(),
        };
        let now = Instant::now();
        s.apply(
            &classified(
                Class::SessionState,
                Flags::NONE,
                vec![set("DATEFORMAT", "SET DATEFORMAT dmy")],
            ),
            now,
        );
        s.apply(
            &classified(
                Class::SessionState,
                Flags::NONE,
                vec![set("NOCOUNT", "SET NOCOUNT ON")],
            ),
            now,
        );
        s.apply(
            &classified(
                Class::SessionState,
                Flags::NONE,
                vec![set("DATEFORMAT", "SET DATEFORMAT ymd")],
            ),
            now,
        );
        assert_eq!(s.settings().get("DATEFORMAT"), Some("SET DATEFORMAT ymd"));
        assert_eq!(s.settings().get("NOCOUNT"), Some("SET NOCOUNT ON"));
        s.apply(
            &classified(
                Class::SessionState,
                Flags::NONE,
                vec![SessionEffect::IsolationLevel("SERIALIZABLE".into())],
            ),
            now,
        );
        assert!(s.view("", "", "", false).strict_isolation);
        s.reset();
        assert!(s.settings().is_empty());
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
        let set = SessionEffect::SetOption {
            option: "LANGUAGE".into(),
            statement: "SET LANGUAGE us_english".into(),
        };
        s.apply(
            &classified(Class::SessionState, Flags::NONE, vec![set]),
            Instant::now(),
        );
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
    fn pins_and_writes_are_remembered() {
        let mut s = RoutingState::default();
        let now = Instant::now();
        s.apply(
            &classified(Class::Write, Flags::CREATES_TEMP_TABLE, vec![]),
            now,
        );
        assert_eq!(s.pin(), Some(PinReason::TempTable));
        assert_eq!(s.view("", "", "", false).last_write, Some(now));
    }
}
