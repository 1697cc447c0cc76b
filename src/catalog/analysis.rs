//! Which procedures of one database are read-only, from their definitions:
//! a pure function of the catalog rows, so the refresh task, `sluice
//! procedures` and the property tests share it.
//!
//! A procedure is read-only only when its body is a positive read by the
//! same classifier that routes clients (calls of other procedures aside),
//! with nothing that outlives it or needs the primary, and every
//! procedure it calls statically is read-only too. Anything Sluice cannot
//! prove is not read-only: a hidden definition, dynamic SQL, `EXECUTE AS`,
//! temp objects, transactions, a call of a procedure outside this
//! database's catalog (system procedures included), a cycle of calls.

use std::collections::HashMap;
use std::fmt;

use crate::classify::{
    beyond_nested_scope, split_procedure, split_procedure_name, Class, Classifier, Flags,
    ProcedureNames,
};

/// One row of the catalog query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProcedure {
    pub schema: String,
    pub name: String,
    /// `sys.sql_modules.definition`: `None` when encrypted or when the
    /// login lacks `VIEW DEFINITION`.
    pub definition: Option<String>,
}

/// Why a procedure is, or is not, read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    ReadOnly,
    NotReadOnly(NotReadOnly),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReadOnly {
    /// `sys.sql_modules.definition` is NULL.
    DefinitionHidden,
    /// The definition is not `CREATE PROCEDURE ... AS ...` as Sluice reads it.
    Unreadable,
    ExecuteAs,
    /// In `routing.write_procedures`.
    Listed,
    /// The body itself: the classifier's reason.
    Body(String),
    DynamicSql,
    TempObjects,
    /// Leaves session state behind (a transaction, a pin).
    LastingEffects,
    /// Calls a procedure that is not in this database's catalog.
    UnknownCallee(String),
    /// Calls a procedure that is not read-only.
    Callee(String),
    /// Part of a cycle of calls.
    Cycle(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::ReadOnly => f.write_str("read-only (detected from its definition)"),
            Verdict::NotReadOnly(why) => write!(f, "not read-only: {why}"),
        }
    }
}

impl fmt::Display for NotReadOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReadOnly::DefinitionHidden => f.write_str(
                "its definition is not visible (WITH ENCRYPTION, or no VIEW DEFINITION permission)",
            ),
            NotReadOnly::Unreadable => f.write_str("its definition could not be read"),
            NotReadOnly::ExecuteAs => f.write_str("WITH EXECUTE AS"),
            NotReadOnly::Listed => f.write_str("listed in routing.write_procedures"),
            NotReadOnly::Body(reason) => write!(f, "{reason}"),
            NotReadOnly::DynamicSql => f.write_str("dynamic SQL"),
            NotReadOnly::TempObjects => f.write_str("temp tables or procedures"),
            NotReadOnly::LastingEffects => f.write_str(
                "leaves session state behind (a transaction, SET options that persist, a pin)",
            ),
            NotReadOnly::UnknownCallee(name) => {
                write!(f, "calls {name}, which is not a procedure of this database")
            }
            NotReadOnly::Callee(name) => write!(f, "calls {name}, which is not read-only"),
            NotReadOnly::Cycle(name) => write!(f, "calls {name} in a cycle"),
        }
    }
}

/// The verdicts of one database's procedures, by `schema.name` lower-cased.
#[derive(Debug, Clone, Default)]
pub struct DatabaseProcedures {
    verdicts: HashMap<String, Verdict>,
}

/// A procedure's own verdict and the procedures it calls, before callees
/// are looked at.
struct Direct {
    verdict: Verdict,
    /// Resolved `schema.name` keys; `Err(name)` for a call outside the catalog.
    callees: Vec<Result<String, String>>,
}

impl DatabaseProcedures {
    /// Analyses the procedures of one database. `write_procedures` are
    /// never read-only, nor is anything that calls them.
    pub fn analyze(
        database: &str,
        procedures: &[CatalogProcedure],
        write_procedures: &[String],
    ) -> DatabaseProcedures {
        let classifier = Classifier::new(0, &[]);
        let listed = ProcedureNames::new(write_procedures);
        let keys: HashMap<String, &CatalogProcedure> = procedures
            .iter()
            .map(|p| (key(&p.schema, &p.name), p))
            .collect();
        let direct: HashMap<&str, Direct> = keys
            .iter()
            .map(|(k, p)| {
                let direct = direct_verdict(&classifier, &listed, database, p, &keys);
                (k.as_str(), direct)
            })
            .collect();
        let mut verdicts = HashMap::with_capacity(direct.len());
        for k in direct.keys() {
            resolve(k, &direct, &mut verdicts, &mut Vec::new());
        }
        DatabaseProcedures { verdicts }
    }

    /// The verdict on a call of `called`, as a client wrote it (`GetOrders`,
    /// `dbo.GetOrders`, `[db].[dbo].[GetOrders]` for this database). A
    /// bare name is taken as `dbo`'s: other default schemas are not known
    /// here, so their calls stay on the primary.
    pub fn verdict(&self, database: &str, called: &str) -> Option<&Verdict> {
        let parts = split_procedure_name(called);
        let k = resolve_name(&parts, "dbo", database)?;
        self.verdicts.get(&k)
    }

    pub fn is_read_only(&self, database: &str, called: &str) -> bool {
        self.verdict(database, called) == Some(&Verdict::ReadOnly)
    }

    /// Every procedure and its verdict, sorted by name.
    pub fn verdicts(&self) -> Vec<(&str, &Verdict)> {
        let mut all: Vec<_> = self.verdicts.iter().map(|(k, v)| (k.as_str(), v)).collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    pub fn len(&self) -> usize {
        self.verdicts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty()
    }

    pub fn read_only_count(&self) -> usize {
        self.verdicts
            .values()
            .filter(|v| **v == Verdict::ReadOnly)
            .count()
    }
}

fn key(schema: &str, name: &str) -> String {
    format!("{}.{}", schema.to_lowercase(), name.to_lowercase())
}

/// `parts` of a called name (unquoted, lower-cased) as a catalog key: a
/// bare name is in `default_schema`; a three-part name must be in
/// `database`; four parts (a linked server) are never resolved.
fn resolve_name(parts: &[String], default_schema: &str, database: &str) -> Option<String> {
    match parts {
        [name] => Some(key(default_schema, name)),
        [schema, name] => Some(key(if schema.is_empty() { "dbo" } else { schema }, name)),
        [db, schema, name] if db.eq_ignore_ascii_case(database) => {
            Some(key(if schema.is_empty() { "dbo" } else { schema }, name))
        }
        _ => None,
    }
}

fn direct_verdict(
    classifier: &Classifier,
    listed: &ProcedureNames,
    database: &str,
    procedure: &CatalogProcedure,
    catalog: &HashMap<String, &CatalogProcedure>,
) -> Direct {
    let not = |why| Direct {
        verdict: Verdict::NotReadOnly(why),
        callees: Vec::new(),
    };
    if listed.contains(&[procedure.schema.as_str(), procedure.name.as_str()]) {
        return not(NotReadOnly::Listed);
    }
    let Some(definition) = &procedure.definition else {
        return not(NotReadOnly::DefinitionHidden);
    };
    let Some(split) = split_procedure(definition) else {
        return not(NotReadOnly::Unreadable);
    };
    if split.executes_as {
        return not(NotReadOnly::ExecuteAs);
    }
    let body = classifier.classify(split.body);
    if body.flags.contains(Flags::DYNAMIC_SQL) {
        return not(NotReadOnly::DynamicSql);
    }
    if !body.temp_tables.is_empty() {
        return not(NotReadOnly::TempObjects);
    }
    // Options set inside a procedure revert when it returns: a body that
    // only sets options reads nothing and changes nothing.
    let reads = matches!(
        body.class_if_unlisted_read_only,
        Class::Read | Class::SessionState
    );
    if !reads || body.flags.intersects(Flags::NOT_FOR_REPLICA) {
        return not(NotReadOnly::Body(body.reason.clone()));
    }
    if body.starts_pin() || !beyond_nested_scope(&body.effects).is_empty() {
        return not(NotReadOnly::LastingEffects);
    }
    // A bare name inside a procedure resolves in its own schema first,
    // then in dbo [CREATE PROCEDURE, "name resolution"].
    let own_schema = procedure.schema.to_lowercase();
    let callees = body
        .unlisted_procedures
        .iter()
        .map(|called| {
            let parts = split_procedure_name(called);
            let in_own = resolve_name(&parts, &own_schema, database);
            let in_dbo = resolve_name(&parts, "dbo", database);
            in_own
                .filter(|k| catalog.contains_key(k))
                .or(in_dbo.filter(|k| catalog.contains_key(k)))
                .ok_or_else(|| called.clone())
        })
        .collect();
    Direct {
        verdict: Verdict::ReadOnly,
        callees,
    }
}

/// The final verdict of `k`: its own, then its callees' (depth first; a
/// procedure met again on the current path is a cycle, not read-only).
fn resolve(
    k: &str,
    direct: &HashMap<&str, Direct>,
    done: &mut HashMap<String, Verdict>,
    path: &mut Vec<String>,
) -> Verdict {
    if let Some(v) = done.get(k) {
        return v.clone();
    }
    if path.iter().any(|p| p == k) {
        return Verdict::NotReadOnly(NotReadOnly::Cycle(k.to_string()));
    }
    let Some(own) = direct.get(k) else {
        return Verdict::NotReadOnly(NotReadOnly::UnknownCallee(k.to_string()));
    };
    let mut verdict = own.verdict.clone();
    if verdict == Verdict::ReadOnly {
        path.push(k.to_string());
        for callee in &own.callees {
            let why = match callee {
                Err(name) => Some(NotReadOnly::UnknownCallee(name.clone())),
                Ok(c) => match resolve(c, direct, done, path) {
                    Verdict::ReadOnly => None,
                    Verdict::NotReadOnly(NotReadOnly::Cycle(_)) => {
                        Some(NotReadOnly::Cycle(c.clone()))
                    }
                    Verdict::NotReadOnly(_) => Some(NotReadOnly::Callee(c.clone())),
                },
            };
            if let Some(why) = why {
                verdict = Verdict::NotReadOnly(why);
                break;
            }
        }
        path.pop();
    }
    // A verdict reached through a cycle depends on the path taken; keep
    // only those that do not (the cycle's members are decided from their
    // own entry, where the cycle is found again).
    if !matches!(verdict, Verdict::NotReadOnly(NotReadOnly::Cycle(_))) || path.is_empty() {
        done.insert(k.to_string(), verdict.clone());
    }
    verdict
}

#[cfg(test)]
mod tests;
