//! The cache key: everything that can change a result, hashed.
//!
//! Two requests share a key only when they are the same request in the
//! same context: the statement text (whitespace normalised outside
//! literals), the RPC's whole body (procedure, options, parameter types and
//! values), the client's login, its database, and every session option it
//! set (DATEFORMAT, LANGUAGE, ... change results).

use blake2::{Blake2s256, Digest};

use crate::backend::Settings;

/// A 128-bit digest: collisions are out of reach, and it is short enough
/// to be a Redis key and a hash-map key without the request's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 16]);

impl Key {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a request asks, as the key sees it.
#[derive(Debug, Clone, Copy)]
pub enum Asked<'a> {
    /// A SQL batch's text.
    Batch(&'a str),
    /// An RPC's body after its ALL_HEADERS: procedure, option flags and
    /// every parameter (the statement of sp_executesql included).
    Rpc(&'a [u8]),
}

/// Who asks, and in what context.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub login: &'a str,
    pub database: &'a str,
    pub settings: &'a Settings,
}

pub fn key(asked: Asked<'_>, context: &Context<'_>) -> Key {
    let mut h = Blake2s256::new();
    // Every field is length-prefixed, so no two field lists hash alike.
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"sluice-cache-key-v1");
    match asked {
        Asked::Batch(sql) => {
            field(b"batch");
            field(normalized(sql).as_bytes());
        }
        Asked::Rpc(body) => {
            field(b"rpc");
            field(body);
        }
    }
    field(context.login.to_lowercase().as_bytes());
    field(context.database.to_lowercase().as_bytes());
    for (option, statement) in context.settings.entries() {
        field(option.as_bytes());
        field(normalized(statement).as_bytes());
    }
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    Key(key)
}

/// `sql` with each run of whitespace outside string literals and quoted
/// identifiers cut to one character: a newline when the run has one (it
/// ends a `--` comment), else a space. Leading and trailing runs go.
pub fn normalized(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut pending: Option<char> = None;
    let mut chars = sql.trim().chars().peekable();
    while let Some(ch) = chars.next() {
        if let Some(close) = quote {
            out.push(ch);
            if ch == close {
                // A doubled closing character is one inside the literal.
                match chars.next_if_eq(&close) {
                    Some(again) => out.push(again),
                    None => quote = None,
                }
            }
            continue;
        }
        if ch.is_whitespace() {
            if ch == '\n' || pending.is_none() {
                pending = Some(if ch == '\n' { '\n' } else { ' ' });
            }
            continue;
        }
        if let Some(space) = pending.take() {
            out.push(space);
        }
        quote = match ch {
            '\'' => Some('\''),
            '"' => Some('"'),
            '[' => Some(']'),
            _ => None,
        };
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_key(sql: &str, database: &str, settings: &Settings) -> Key {
        let context = Context {
            login: "app",
            database,
            settings,
        };
        key(Asked::Batch(sql), &context)
    }

    #[test]
    fn whitespace_outside_literals_does_not_change_the_key() {
        let s = Settings::default();
        assert_eq!(
            batch_key("SELECT  a\tFROM t", "db", &s),
            batch_key(" SELECT a FROM t \r\n", "db", &s)
        );
        assert_ne!(
            batch_key("SELECT 'a  b'", "db", &s),
            batch_key("SELECT 'a b'", "db", &s)
        );
        assert_ne!(
            batch_key("SELECT [a  b] FROM t", "db", &s),
            batch_key("SELECT [a b] FROM t", "db", &s)
        );
        // A line comment ends at the newline: the newline is kept.
        assert_ne!(
            batch_key("SELECT 1 --x\nFROM t", "db", &s),
            batch_key("SELECT 1 --x FROM t", "db", &s)
        );
    }

    #[test]
    fn quotes_doubled_inside_a_literal_stay_inside_it() {
        assert_eq!(
            normalized("SELECT 'it''s  here'  x"),
            "SELECT 'it''s  here' x"
        );
        assert_eq!(normalized("SELECT [a]]  b]  x"), "SELECT [a]]  b] x");
    }

    #[test]
    fn database_login_settings_and_request_kind_change_the_key() {
        let plain = Settings::default();
        let mut dmy = Settings::default();
        dmy.set("DATEFORMAT", "SET DATEFORMAT dmy").unwrap();
        let base = batch_key("SELECT 1", "db", &plain);
        assert_ne!(base, batch_key("SELECT 1", "other", &plain));
        assert_ne!(base, batch_key("SELECT 1", "db", &dmy));
        let other_login = Context {
            login: "admin",
            database: "db",
            settings: &plain,
        };
        assert_ne!(base, key(Asked::Batch("SELECT 1"), &other_login));
        let context = Context {
            login: "app",
            database: "db",
            settings: &plain,
        };
        assert_ne!(base, key(Asked::Rpc(b"SELECT 1"), &context));
        assert_eq!(base.hex().len(), 32);
    }
}
