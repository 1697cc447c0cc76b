//! Session settings a connection carries beyond what its login gave it
//! (`SET DATEFORMAT dmy`, `USE sales`, an isolation level ...), kept as the
//! latest statement per option, in the order they were last set: order
//! matters, since `SET LANGUAGE` also sets DATEFORMAT and DATEFIRST. A
//! session has the settings it asked for; a pooled connection has those of
//! whoever used it last. Before a request runs, [`plan`] brings the
//! connection to the session's settings with as little as it can: nothing
//! when they match; the session's statements from the first place the two
//! differ, when the connection has no option the session lacks; else a
//! RESETCONNECTION followed by all of the session's statements.

use std::hash::{Hash, Hasher};

/// The key of `SET TRANSACTION ISOLATION LEVEL`, whose default is known
/// and which is re-asserted explicitly: it survives sp_reset_connection on
/// some SQL Server builds.
pub const ISOLATION: &str = "TRANSACTION ISOLATION LEVEL";
/// The key of `USE <database>`.
pub const DATABASE: &str = "USE";
const DEFAULT_ISOLATION: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// Most distinct options one set holds; a client cannot make it grow
/// without bound.
pub const MAX_SETTINGS: usize = 64;

/// Settings as (option, statement) in the order last set, with a
/// fingerprint that makes "same settings?" one comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    entries: Vec<(Box<str>, Box<str>)>,
    fingerprint: u64,
}

/// More distinct options than [`MAX_SETTINGS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySettings;

impl Settings {
    /// Records `statement` as the latest for `option` (upper-case key); it
    /// moves to the end, even when unchanged, since what it set may have
    /// been changed by a later statement (a LANGUAGE after a DATEFORMAT).
    pub fn set(&mut self, option: &str, statement: &str) -> Result<(), TooManySettings> {
        match self.position(option) {
            Some(i)
                if i + 1 == self.entries.len() && same_statement(&self.entries[i].1, statement) =>
            {
                return Ok(())
            }
            Some(i) => {
                self.entries.remove(i);
            }
            None if self.entries.len() >= MAX_SETTINGS => return Err(TooManySettings),
            None => {}
        }
        self.entries.push((option.into(), statement.into()));
        self.refresh_fingerprint();
        Ok(())
    }

    /// Forgets `option` (back to the login's value).
    pub fn remove(&mut self, option: &str) {
        if let Some(i) = self.position(option) {
            self.entries.remove(i);
            self.refresh_fingerprint();
        }
    }

    pub fn get(&self, option: &str) -> Option<&str> {
        self.position(option).map(|i| self.entries[i].1.as_ref())
    }

    fn position(&self, option: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k.as_ref() == option)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (option, statement) in the order last set.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Equal settings have equal fingerprints; the empty set's is 0.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// What survives a RESETCONNECTION: only the isolation level, which
    /// some builds leak [the connection's settings are otherwise the login's].
    pub fn after_reset(&self) -> Settings {
        let mut kept = Settings::default();
        if let Some(level) = self.get(ISOLATION) {
            if !same_statement(level, DEFAULT_ISOLATION) {
                kept.set(ISOLATION, level).ok();
            }
        }
        kept
    }

    fn refresh_fingerprint(&mut self) {
        if self.entries.is_empty() {
            self.fingerprint = 0;
            return;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (option, statement) in &self.entries {
            option.hash(&mut hasher);
            normalized(statement).for_each(|c| c.hash(&mut hasher));
        }
        self.fingerprint = hasher.finish() | 1;
    }
}

/// How to bring a connection to a session's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsPlan {
    /// The connection has settings the session does not: start over with
    /// RESETCONNECTION (on the batch below).
    pub reset: bool,
    /// The statements to run, `;`-separated.
    pub batch: String,
}

/// Nothing when `conn` already has `session`'s settings.
pub fn plan(conn: &Settings, session: &Settings) -> Option<SettingsPlan> {
    if conn.fingerprint == session.fingerprint && conn == session {
        return None;
    }
    let only_on_conn = |option: &str| session.get(option).is_none() && option != ISOLATION;
    let reset = conn.entries.iter().any(|(k, _)| only_on_conn(k));
    let base = if reset {
        conn.after_reset()
    } else {
        conn.clone()
    };
    let mut statements: Vec<&str> = Vec::new();
    if session.get(ISOLATION).is_none() && base.get(ISOLATION).is_some() {
        statements.push(DEFAULT_ISOLATION);
    }
    // Where the two first differ, the session's order takes over: a later
    // statement may depend on an earlier one (LANGUAGE sets DATEFORMAT).
    let agreed = base
        .entries
        .iter()
        .zip(&session.entries)
        .take_while(|((k1, s1), (k2, s2))| k1 == k2 && same_statement(s1, s2))
        .count();
    statements.extend(session.entries[agreed..].iter().map(|(_, s)| s.as_ref()));
    if statements.is_empty() && !reset {
        return None;
    }
    Some(SettingsPlan {
        reset,
        batch: statements.join(";\n"),
    })
}

/// Statements compare without regard to case or runs of white space
/// (`set  nocount ON` is `SET NOCOUNT ON`).
fn same_statement(a: &str, b: &str) -> bool {
    normalized(a).eq(normalized(b))
}

fn normalized(s: &str) -> impl Iterator<Item = char> + '_ {
    s.split_whitespace()
        .flat_map(|word| word.chars().chain(std::iter::once(' ')))
        .map(|c| c.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut s = Settings::default();
        for (k, v) in pairs {
            s.set(k, v).unwrap();
        }
        s
    }

    #[test]
    fn matching_settings_need_nothing() {
        let a = settings(&[
            ("NOCOUNT", "SET NOCOUNT ON"),
            ("DATEFORMAT", "SET DATEFORMAT dmy"),
        ]);
        let b = settings(&[
            ("NOCOUNT", "SET NOCOUNT ON"),
            ("DATEFORMAT", "set  dateformat DMY"),
        ]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(plan(&a, &b), None);
        assert_eq!(plan(&Settings::default(), &Settings::default()), None);
    }

    #[test]
    fn only_the_differing_statements_are_applied() {
        let conn = settings(&[("NOCOUNT", "SET NOCOUNT ON")]);
        let session = settings(&[
            ("NOCOUNT", "SET NOCOUNT ON"),
            ("XACT_ABORT", "SET XACT_ABORT ON"),
        ]);
        let plan = plan(&conn, &session).unwrap();
        assert!(!plan.reset);
        assert_eq!(plan.batch, "SET XACT_ABORT ON");
    }

    #[test]
    fn settings_the_session_lacks_need_a_reset_and_a_full_replay() {
        let conn = settings(&[
            ("DATEFORMAT", "SET DATEFORMAT dmy"),
            ("NOCOUNT", "SET NOCOUNT ON"),
        ]);
        let session = settings(&[("NOCOUNT", "SET NOCOUNT ON")]);
        let plan = plan(&conn, &session).unwrap();
        assert!(plan.reset);
        assert_eq!(plan.batch, "SET NOCOUNT ON");
        let to_empty = super::plan(&conn, &Settings::default()).unwrap();
        assert!(to_empty.reset);
        assert_eq!(to_empty.batch, "");
    }

    #[test]
    fn the_isolation_level_is_reasserted_rather_than_trusted_to_a_reset() {
        let conn = settings(&[
            (ISOLATION, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
            ("LANGUAGE", "SET LANGUAGE French"),
        ]);
        let plan = plan(&conn, &Settings::default()).unwrap();
        assert!(plan.reset);
        assert_eq!(plan.batch, DEFAULT_ISOLATION);
        // Without a reset the level is set back explicitly too.
        let conn = settings(&[(ISOLATION, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT")]);
        let plan = super::plan(&conn, &Settings::default()).unwrap();
        assert!(!plan.reset);
        assert_eq!(plan.batch, DEFAULT_ISOLATION);
        assert!(conn.after_reset().get(ISOLATION).is_some());
    }

    #[test]
    fn order_matters_and_a_later_language_is_replayed_after_its_dateformat() {
        let mut session = settings(&[("LANGUAGE", "SET LANGUAGE French")]);
        session.set("DATEFORMAT", "SET DATEFORMAT ymd").unwrap();
        let conn = settings(&[
            ("LANGUAGE", "SET LANGUAGE us_english"),
            ("DATEFORMAT", "SET DATEFORMAT ymd"),
        ]);
        // The DATEFORMAT must follow the LANGUAGE that would undo it.
        let plan = plan(&conn, &session).unwrap();
        assert_eq!(plan.batch, "SET LANGUAGE French;\nSET DATEFORMAT ymd");
        // Setting a value again moves it last: it is what holds now.
        let mut s = settings(&[
            ("DATEFORMAT", "SET DATEFORMAT ymd"),
            ("LANGUAGE", "SET LANGUAGE French"),
        ]);
        let before = s.fingerprint();
        s.set("DATEFORMAT", "SET DATEFORMAT ymd").unwrap();
        assert_ne!(s.fingerprint(), before);
        let reordered = super::plan(
            &settings(&[
                ("DATEFORMAT", "SET DATEFORMAT ymd"),
                ("LANGUAGE", "SET LANGUAGE French"),
            ]),
            &s,
        )
        .unwrap();
        assert!(!reordered.reset);
        assert_eq!(reordered.batch, "SET LANGUAGE French;\nSET DATEFORMAT ymd");
    }

    #[test]
    fn the_number_of_options_is_bounded() {
        let mut s = Settings::default();
        for i in 0..MAX_SETTINGS {
            s.set(&format!("OPT{i}"), "SET X ON").unwrap();
        }
        assert_eq!(s.set("ONE MORE", "SET Y ON"), Err(TooManySettings));
        assert!(
            s.set("OPT1", "SET X OFF").is_ok(),
            "an option already kept can change"
        );
        s.remove("OPT1");
        assert_eq!(s.get("OPT1"), None);
    }
}
