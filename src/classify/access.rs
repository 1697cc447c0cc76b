//! What a batch touches, for the result cache: the tables it reads and
//! writes ([`TableAccess`]) and the first function whose result can differ
//! between two runs of the same text ([`Classification::volatile`]).
//!
//! Names are compared as strings by the cache, so they are normalised here
//! once: lower-cased, unquoted, and without their schema (`object`, or
//! `database.object` for a three-part name). A bare name resolves to the
//! user's default schema, which Sluice does not know; keying by object name
//! alone may invalidate too much (`sales.t` and `dbo.t` share `t`), never
//! too little.
//!
//! [`Classification::volatile`]: super::Classification::volatile

use super::lexer::Kw;

/// The tables a batch reads and writes, for the result cache.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableAccess {
    /// Tables read: FROM/JOIN/APPLY items at any depth (subqueries, CTE
    /// bodies, `EXISTS`, `IN (SELECT ..)`), `MERGE ... USING`, the sources
    /// of `INSERT ... SELECT` and `UPDATE/DELETE ... FROM`. A view or
    /// synonym is listed as itself.
    pub read: Vec<String>,
    /// Tables written: INSERT/UPDATE/DELETE/MERGE targets (through an alias
    /// to the table it names; through a CTE or derived table to every table
    /// the batch reads), `OUTPUT ... INTO`, `SELECT ... INTO`, TRUNCATE,
    /// BULK INSERT, and the objects of CREATE/ALTER/DROP (and the table of
    /// an index, statistics or trigger).
    pub written: Vec<String>,
    /// False when the batch may touch tables not listed: a procedure call,
    /// non-literal dynamic SQL, a user function, remote data (OPENQUERY,
    /// OPENROWSET, OPENDATASOURCE, four-part names), the catalog (`sys.*`,
    /// `INFORMATION_SCHEMA.*`, `OBJECT_ID()`...), cursors, a statement the
    /// scan does not follow, or anything that makes the batch Unknown.
    pub complete: bool,
}

/// A table's name as the cache compares it, from the parts of a dotted
/// name (unquoted). `None` for temp tables, table variables, and names
/// that are not one- to three-part.
pub fn table_name(parts: &[String]) -> Option<String> {
    let object = parts.last()?;
    if object.is_empty() || object.starts_with(['#', '@']) {
        return None;
    }
    match parts.len() {
        1 | 2 => Some(object.to_lowercase()),
        3 if parts[0].is_empty() => Some(object.to_lowercase()),
        3 => Some(format!(
            "{}.{}",
            parts[0].to_lowercase(),
            object.to_lowercase()
        )),
        _ => None,
    }
}

/// Adds `name` to `list` unless it is there already.
pub(super) fn push_unique(list: &mut Vec<String>, name: String) {
    if !list.contains(&name) {
        list.push(name);
    }
}

/// How a keyword makes a batch's result differ between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Volatile {
    /// Only as a call: `NEWID(`, `USER_NAME(` (a column `user_name` is not).
    Call,
    /// As a bare keyword too: `CURRENT_TIMESTAMP`, `SYSTEM_USER`, `USER`.
    Niladic,
}

/// Non-deterministic or session-dependent functions (their keywords).
pub(super) fn volatile(kw: Kw) -> Option<Volatile> {
    use Kw::*;
    match kw {
        GETDATE
        | GETUTCDATE
        | SYSDATETIME
        | SYSUTCDATETIME
        | SYSDATETIMEOFFSET
        | NEWID
        | NEWSEQUENTIALID
        | RAND
        | CRYPT_GEN_RANDOM
        | HOST_NAME
        | HOST_ID
        | APP_NAME
        | SUSER_NAME
        | SUSER_SNAME
        | SUSER_SID
        | SUSER_ID
        | USER_NAME
        | USER_ID
        | ORIGINAL_LOGIN
        | CONTEXT_INFO
        | SESSION_CONTEXT
        | CONNECTIONPROPERTY
        | SESSIONPROPERTY
        | CURRENT_REQUEST_ID
        | CURRENT_TRANSACTION_ID
        | MIN_ACTIVE_ROWVERSION
        | IS_MEMBER
        | IS_ROLEMEMBER
        | IS_SRVROLEMEMBER
        | HAS_PERMS_BY_NAME
        | PERMISSIONS
        | SCOPE_IDENTITY
        | IDENT_CURRENT
        | XACT_STATE
        | DB_NAME
        | DB_ID
        | SCHEMA_NAME
        | SCHEMA_ID
        | ORIGINAL_DB_NAME => Some(Volatile::Call),
        CURRENT_TIMESTAMP | CURRENT_DATE | CURRENT_USER | SESSION_USER | SYSTEM_USER | USER
        | TABLESAMPLE => Some(Volatile::Niladic),
        _ => Option::None,
    }
}

/// Functions that read the catalog (which DDL on any object changes): a
/// batch calling them may depend on tables it does not name.
pub(super) fn reads_catalog(kw: Kw) -> bool {
    use Kw::*;
    matches!(
        kw,
        OBJECT_ID
            | OBJECT_NAME
            | OBJECT_SCHEMA_NAME
            | OBJECT_DEFINITION
            | OBJECTPROPERTY
            | OBJECTPROPERTYEX
            | COL_LENGTH
            | COL_NAME
            | COLUMNPROPERTY
            | INDEXPROPERTY
            | INDEX_COL
            | TYPE_ID
            | TYPE_NAME
            | TYPEPROPERTY
            | DATABASEPROPERTYEX
            | IDENT_SEED
            | IDENT_INCR
    )
}

/// Dynamic management objects and system functions (`sys.dm_*`,
/// `sys.fn_*`, `sysprocesses`): their rows change on their own.
pub(super) fn is_volatile_object(parts: &[String]) -> bool {
    let lower = |s: &str| s.to_ascii_lowercase();
    let Some(object) = parts.last().map(|p| lower(p)) else {
        return false;
    };
    let in_sys = parts.len() >= 2 && parts[parts.len() - 2].eq_ignore_ascii_case("sys");
    object == "sysprocesses" || (in_sys && (object.starts_with("dm_") || object.starts_with("fn_")))
}

/// Catalog views (`sys.*`, `INFORMATION_SCHEMA.*`): DDL on any object
/// changes them.
pub(super) fn is_catalog(parts: &[String]) -> bool {
    parts.len() >= 2 && {
        let schema = &parts[parts.len() - 2];
        schema.eq_ignore_ascii_case("sys") || schema.eq_ignore_ascii_case("information_schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(parts: &[&str]) -> Option<String> {
        let parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
        table_name(&parts)
    }

    #[test]
    fn names_drop_the_schema_and_keep_the_database() {
        assert_eq!(name(&["Orders"]).as_deref(), Some("orders"));
        assert_eq!(name(&["dbo", "Orders"]).as_deref(), Some("orders"));
        assert_eq!(name(&["Sales", "Orders"]).as_deref(), Some("orders"));
        assert_eq!(
            name(&["Shop", "dbo", "Orders"]).as_deref(),
            Some("shop.orders")
        );
        assert_eq!(
            name(&["Shop", "", "Orders"]).as_deref(),
            Some("shop.orders")
        );
        assert_eq!(name(&["", "", "Orders"]).as_deref(), Some("orders"));
        assert_eq!(name(&["#t"]), None);
        assert_eq!(name(&["tempdb", "", "#t"]), None);
        assert_eq!(name(&["@t"]), None);
        assert_eq!(name(&["srv", "db", "dbo", "t"]), None);
        assert_eq!(name(&[]), None);
    }
}
