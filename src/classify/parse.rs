//! Classification from sqlparser's AST (`MsSqlDialect`).
//!
//! The walk covers statements and the structure of queries: CTEs (a CTE can
//! hide a `DELETE`), set operations, `SELECT ... INTO`, `FROM` items with
//! their table hints, derived tables, `FOR UPDATE`, and DML targets (a table
//! variable target is a read). Expression-level facts (session functions,
//! `NEXT VALUE FOR`, hints inside `WHERE` subqueries) come from the keyword
//! scan, which sees every token and always runs too. Statement kinds the walk
//! does not know are writes.

use sqlparser::ast::{
    ConditionalStatementBlock, ConditionalStatements, DeclareType, Delete, Expr, FromTable,
    FunctionArg, FunctionArgExpr, Insert, ObjectName, ObjectNamePart, Query, Select,
    SessionParamValue, Set, SetExpr, SetSessionParamKind, Statement, TableFactor, TableObject,
    TableWithJoins, Update,
};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use super::procedures::ReadOnlyProcedures;
use super::verdict::Verdict;
use super::Flags;

/// sqlparser's own recursion guard (its default is 50); deeper batches fail
/// to parse and are left to the keyword scan.
const RECURSION_LIMIT: usize = 40;

/// Table hints that take update/exclusive locks or hold shared locks to the
/// end of the transaction. NOLOCK, READPAST, ROWLOCK, PAGLOCK, NOWAIT, ...
/// are not in the list.
pub(super) const LOCKING_HINTS: &[&str] = &[
    "UPDLOCK",
    "XLOCK",
    "HOLDLOCK",
    "TABLOCKX",
    "TABLOCK",
    "SERIALIZABLE",
    "REPEATABLEREAD",
];

pub(super) fn verdict(sql: &str, procedures: &ReadOnlyProcedures) -> Result<Verdict, ParserError> {
    let statements = Parser::new(&MsSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)?
        .parse_statements()?;
    let mut walk = Walk {
        v: Verdict::default(),
        procedures,
    };
    for s in &statements {
        walk.statement(s);
    }
    Ok(walk.v)
}

struct Walk<'a> {
    v: Verdict,
    procedures: &'a ReadOnlyProcedures,
}

fn parts(name: &ObjectName) -> Vec<&str> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(ident) => ident.value.as_str(),
            ObjectNamePart::Function(_) => "",
        })
        .collect()
}

fn dotted(name: &ObjectName) -> String {
    parts(name).join(".")
}

fn last_part(name: &ObjectName) -> &str {
    parts(name).last().copied().unwrap_or("")
}

fn is_table_variable(name: &ObjectName) -> bool {
    last_part(name).starts_with('@') && name.0.len() == 1
}

impl Walk<'_> {
    fn statement(&mut self, s: &Statement) {
        match s {
            Statement::Query(q) => {
                self.v.read(|| "SELECT".into());
                self.query(q);
            }
            Statement::Insert(i) => self.insert(i),
            Statement::Update(u) => self.update(u),
            Statement::Delete(d) => self.delete(d),
            Statement::Merge(_) => self.v.write(|| "MERGE".into()),
            Statement::Declare { stmts, .. } => {
                self.v.read(|| "DECLARE".into());
                for d in stmts {
                    if matches!(d.declare_type, Some(DeclareType::Cursor)) {
                        self.v.flag(Flags::CURSOR, || "cursor".into());
                    }
                    if let Some(q) = &d.for_query {
                        self.query(q);
                    }
                }
            }
            Statement::Set(set) => self.set(set),
            Statement::Use(_) => self.v.session(|| "USE".into()),
            Statement::StartTransaction {
                statements,
                has_end_keyword,
                ..
            } => {
                if *has_end_keyword || !statements.is_empty() {
                    for s in statements {
                        self.statement(s);
                    }
                } else {
                    self.v.transaction(|| "BEGIN TRANSACTION".into());
                }
            }
            Statement::Commit { .. } => self.v.transaction(|| "COMMIT".into()),
            Statement::Rollback { .. } => self.v.transaction(|| "ROLLBACK".into()),
            Statement::Savepoint { .. } => self.v.transaction(|| "SAVE TRANSACTION".into()),
            Statement::If(i) => {
                self.v.read(|| "IF".into());
                self.block(&i.if_block);
                for b in &i.elseif_blocks {
                    self.block(b);
                }
                if let Some(b) = &i.else_block {
                    self.block(b);
                }
            }
            Statement::While(w) => {
                self.v.read(|| "WHILE".into());
                self.block(&w.while_block);
            }
            Statement::Print(_) => self.v.read(|| "PRINT".into()),
            Statement::RaisError { .. } => self.v.read(|| "RAISERROR".into()),
            Statement::Throw(_) => self.v.read(|| "THROW".into()),
            Statement::Return(_) => self.v.read(|| "RETURN".into()),
            Statement::WaitFor(_) => self.v.read(|| "WAITFOR".into()),
            Statement::Open(_)
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Deallocate { .. } => {
                self.v.read(|| "cursor".into());
                self.v.flag(Flags::CURSOR, || "cursor".into());
            }
            Statement::Execute {
                name: Some(name), ..
            } => self.execute(name),
            Statement::Execute { name: None, .. } => {
                // EXEC('...'): the keyword scan classifies the string.
                self.v.flag(Flags::DYNAMIC_SQL, String::new);
            }
            Statement::CreateTable(ct) => {
                let name = dotted(&ct.name);
                if name.starts_with('#') && !name.starts_with("##") {
                    self.v.flag(Flags::CREATES_TEMP_TABLE, || {
                        format!("creates temp table {name}")
                    });
                }
                self.temp_name(&ct.name);
                self.v.write(|| format!("CREATE TABLE {name}"));
            }
            other => self.v.write(|| statement_kind(other)),
        }
    }

    fn block(&mut self, b: &ConditionalStatementBlock) {
        let statements = match &b.conditional_statements {
            ConditionalStatements::Sequence { statements } => statements,
            ConditionalStatements::BeginEnd(be) => &be.statements,
        };
        for s in statements {
            self.statement(s);
        }
    }

    fn query(&mut self, q: &Query) {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.query(&cte.query);
            }
        }
        self.set_expr(&q.body);
        if !q.locks.is_empty() {
            self.v.flag(Flags::LOCKING_HINT, || "FOR UPDATE".into());
        }
    }

    fn set_expr(&mut self, e: &SetExpr) {
        match e {
            SetExpr::Select(s) => self.select(s),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                self.statement(s)
            }
            SetExpr::Values(_) | SetExpr::Table(_) => {}
        }
    }

    fn select(&mut self, s: &Select) {
        if let Some(into) = &s.into {
            let target = into.targets.first().map(expr_name).unwrap_or_default();
            if target.starts_with('#') && !target.starts_with("##") {
                self.v.flag(Flags::CREATES_TEMP_TABLE, || {
                    format!("creates temp table {target}")
                });
            }
            if target.starts_with('#') {
                self.v.temp_table(&target);
            }
            self.v.write(|| format!("SELECT ... INTO {target}"));
        }
        for t in &s.from {
            self.table_with_joins(t);
        }
    }

    fn table_with_joins(&mut self, t: &TableWithJoins) {
        self.table_factor(&t.relation);
        for j in &t.joins {
            self.table_factor(&j.relation);
        }
    }

    fn table_factor(&mut self, f: &TableFactor) {
        match f {
            TableFactor::Table {
                name,
                with_hints,
                args,
                ..
            } => {
                self.temp_name(name);
                if name.0.len() >= 4 {
                    let name = dotted(name);
                    self.v
                        .unknown(|| format!("four-part name {name} (linked server)"));
                }
                for hint in with_hints {
                    self.hint(hint);
                }
                // `FROM t (UPDLOCK)` (no WITH) parses as table arguments.
                for arg in args.iter().flat_map(|a| &a.args) {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                        self.hint(e);
                    }
                }
            }
            TableFactor::Derived { subquery, .. } => self.query(subquery),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins),
            TableFactor::Pivot { table, .. }
            | TableFactor::Unpivot { table, .. }
            | TableFactor::MatchRecognize { table, .. } => self.table_factor(table),
            _ => {}
        }
    }

    fn hint(&mut self, e: &Expr) {
        if let Expr::Identifier(ident) = e {
            if let Some(h) = LOCKING_HINTS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(&ident.value))
            {
                self.v
                    .flag(Flags::LOCKING_HINT, || format!("locking hint {h}"));
            }
        }
    }

    fn temp_name(&mut self, name: &ObjectName) {
        let last = last_part(name);
        if last.starts_with('#') {
            self.v.flag(Flags::USES_TEMP_TABLE, || {
                format!("temp table {}", last.to_lowercase())
            });
            self.v.temp_table(last);
        }
    }

    fn insert(&mut self, i: &Insert) {
        match &i.table {
            TableObject::TableName(name) if is_table_variable(name) => {
                self.v
                    .read(|| format!("INSERT {} (table variable)", dotted(name)));
            }
            TableObject::TableName(name) => {
                self.temp_name(name);
                self.v.write(|| format!("INSERT ({})", dotted(name)));
            }
            _ => self.v.write(|| "INSERT".into()),
        }
        if i.output.is_some() || i.returning.is_some() {
            self.v.write(|| "OUTPUT clause".into());
        }
        if let Some(source) = &i.source {
            self.query(source);
        }
    }

    fn update(&mut self, u: &Update) {
        match &u.table.relation {
            TableFactor::Table { name, .. }
                if is_table_variable(name) && u.table.joins.is_empty() =>
            {
                self.v
                    .read(|| format!("UPDATE {} (table variable)", dotted(name)));
            }
            TableFactor::Table { name, .. } => {
                self.temp_name(name);
                self.v.write(|| format!("UPDATE ({})", dotted(name)));
            }
            _ => self.v.write(|| "UPDATE".into()),
        }
        if u.output.is_some() || u.returning.is_some() {
            self.v.write(|| "OUTPUT clause".into());
        }
        if let Some(from) = &u.from {
            let tables = match from {
                sqlparser::ast::UpdateTableFromKind::BeforeSet(t)
                | sqlparser::ast::UpdateTableFromKind::AfterSet(t) => t,
            };
            for t in tables {
                self.table_with_joins(t);
            }
        }
    }

    fn delete(&mut self, d: &Delete) {
        let from = match &d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        let target = match (d.tables.first(), from.first()) {
            (Some(name), _) => Some(name),
            (
                None,
                Some(TableWithJoins {
                    relation: TableFactor::Table { name, .. },
                    ..
                }),
            ) => Some(name),
            _ => None,
        };
        match target {
            Some(name) if is_table_variable(name) && d.tables.is_empty() && from.len() == 1 => {
                self.v
                    .read(|| format!("DELETE {} (table variable)", dotted(name)));
            }
            Some(name) => self.v.write(|| format!("DELETE ({})", dotted(name))),
            None => self.v.write(|| "DELETE".into()),
        }
        if d.output.is_some() || d.returning.is_some() {
            self.v.write(|| "OUTPUT clause".into());
        }
        for t in from {
            self.table_with_joins(t);
        }
    }

    fn set(&mut self, set: &Set) {
        match set {
            Set::SingleAssignment { variable, .. } if last_part(variable).starts_with('@') => {
                self.v.read(|| "SET @variable".into())
            }
            Set::ParenthesizedAssignments { variables, .. }
                if variables.iter().all(|v| last_part(v).starts_with('@')) =>
            {
                self.v.read(|| "SET @variable".into())
            }
            Set::SetSessionParam(SetSessionParamKind::Generic(g)) => {
                for name in &g.names {
                    if name.eq_ignore_ascii_case("IMPLICIT_TRANSACTIONS") {
                        self.v.transaction(|| "SET IMPLICIT_TRANSACTIONS".into());
                    } else if name.eq_ignore_ascii_case("CONTEXT_INFO") {
                        self.v
                            .flag(Flags::CONTEXT_INFO, || "SET CONTEXT_INFO".into());
                    }
                }
                self.v.session(|| format!("SET {}", g.names.join(", ")));
            }
            Set::SetSessionParam(SetSessionParamKind::IdentityInsert(ii)) => {
                if matches!(ii.value, SessionParamValue::On) {
                    self.v
                        .flag(Flags::IDENTITY_INSERT, || "SET IDENTITY_INSERT ON".into());
                }
                self.v.session(|| "SET IDENTITY_INSERT".into());
            }
            Set::SetSessionParam(_) | Set::SetTransaction { .. } => self.v.session(|| "SET".into()),
            _ => self.v.unknown(|| "SET of an unrecognised form".into()),
        }
    }

    fn execute(&mut self, name: &ObjectName) {
        let last = last_part(name);
        if name.0.len() == 1 && last.eq_ignore_ascii_case("AS") {
            self.v.unknown(|| "EXECUTE AS (impersonation)".into());
            return;
        }
        if last.eq_ignore_ascii_case("sp_executesql") {
            // The keyword scan classifies the statement string.
            self.v.flag(Flags::DYNAMIC_SQL, String::new);
            return;
        }
        let proc = dotted(name);
        self.v.flag(Flags::PROCEDURE_CALL, String::new);
        if self.procedures.contains(&parts(name)) {
            self.v.read(|| format!("EXEC {proc} (read-only)"));
        } else {
            let why = || format!("EXEC {proc} (not read-only)");
            self.v.unlisted_procedure(&proc, why);
        }
        self.v.procedure(proc);
    }
}

/// `SELECT ... INTO target`: the target's name as written, unquoted.
fn expr_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join("."),
        _ => String::new(),
    }
}

/// A short name for a statement the walk does not classify itself. (Not
/// its `Debug` form: that recurses as deep as the statement.)
fn statement_kind(s: &Statement) -> String {
    let kind = match s {
        Statement::CreateView(_) => "CREATE VIEW",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::CreateFunction(_) => "CREATE FUNCTION",
        Statement::CreateProcedure { .. } => "CREATE PROCEDURE",
        Statement::CreateTrigger(_) => "CREATE TRIGGER",
        Statement::CreateSchema { .. } => "CREATE SCHEMA",
        Statement::CreateDatabase { .. } => "CREATE DATABASE",
        Statement::CreateSequence { .. } => "CREATE SEQUENCE",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::AlterIndex { .. } => "ALTER INDEX",
        Statement::AlterView(_) => "ALTER VIEW",
        Statement::Drop { .. } => "DROP",
        Statement::Truncate(_) => "TRUNCATE",
        Statement::Grant(_) => "GRANT",
        Statement::Revoke(_) => "REVOKE",
        Statement::Deny(_) => "DENY",
        Statement::Kill { .. } => "KILL",
        _ => "statement",
    };
    format!("{kind} (sqlparser)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Class;

    fn class(sql: &str) -> Class {
        verdict(sql, &ReadOnlyProcedures::default())
            .map(|v| v.class())
            .unwrap_or(Class::Unknown)
    }

    #[test]
    fn walks_cte_bodies_and_targets() {
        assert_eq!(
            class("WITH x AS (SELECT * FROM t) DELETE FROM x"),
            Class::Write
        );
        assert_eq!(
            class("WITH x AS (SELECT * FROM t) SELECT * FROM x"),
            Class::Read
        );
        assert_eq!(class("SELECT a INTO #t FROM b"), Class::Write);
        assert_eq!(
            class("DECLARE @t TABLE (id int); INSERT INTO @t VALUES (1); SELECT * FROM @t"),
            Class::Read
        );
        assert_eq!(class("UPDATE @t SET a = 1"), Class::Read);
        assert_eq!(class("DELETE FROM @t WHERE a = 1"), Class::Read);
        assert_eq!(class("DELETE FROM @t OUTPUT deleted.a"), Class::Write);
        assert_eq!(class("TRUNCATE TABLE t"), Class::Write);
    }

    #[test]
    fn finds_hints_and_temp_tables_in_from_items() {
        let v = verdict(
            "SELECT * FROM a JOIN (SELECT * FROM #b WITH (UPDLOCK)) d ON 1 = 1",
            &ReadOnlyProcedures::default(),
        )
        .expect("parses");
        assert!(v
            .flags
            .contains(Flags::LOCKING_HINT | Flags::USES_TEMP_TABLE));
        assert_eq!(v.temp_tables, ["#b"]);
    }

    #[test]
    fn deep_nesting_fails_instead_of_overflowing() {
        let sql = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(verdict(&sql, &ReadOnlyProcedures::default()).is_err());
    }
}
