//! Stored procedure definitions as `sys.sql_modules` holds them
//! (`CREATE PROCEDURE name @p INT AS body`): where the body starts, and
//! which batches change a database's procedures.

use super::lexer::{self, Kind, Kw, Token};

/// A procedure's definition split where its body starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcedureDefinition<'a> {
    /// `CREATE PROCEDURE name @p INT WITH RECOMPILE`.
    pub header: &'a str,
    /// Everything after the `AS` that ends the header.
    pub body: &'a str,
    /// The header has `WITH EXECUTE AS ...`.
    pub executes_as: bool,
}

/// Splits `CREATE [OR ALTER] PROC[EDURE] ... AS body` at the `AS` that is
/// neither a parameter's (`@p AS INT`) nor `EXECUTE AS`'s. `None` when the
/// text is not a procedure definition Sluice can follow.
pub fn split_procedure(definition: &str) -> Option<ProcedureDefinition<'_>> {
    let tokens = lexer::tokenize(definition);
    if tokens.unterminated || tokens.unbalanced {
        return None;
    }
    let toks = &tokens.toks;
    let header_start = procedure_keyword(toks, 0)? + 1;
    let mut executes_as = false;
    for i in header_start..toks.len() {
        let tok = &toks[i];
        if !tok.is(Kw::AS) || tok.depth != 0 {
            continue;
        }
        match toks.get(i.wrapping_sub(1)) {
            Some(prev) if prev.kind == Kind::Var => continue,
            Some(prev) if prev.is(Kw::EXEC) || prev.is(Kw::EXECUTE) => {
                executes_as = true;
                continue;
            }
            _ => {}
        }
        return Some(ProcedureDefinition {
            header: definition.get(..tok.start)?,
            body: definition.get(tok.end..)?,
            executes_as,
        });
    }
    None
}

/// The index of `PROC`/`PROCEDURE` in a `CREATE`, `ALTER`, `CREATE OR
/// ALTER` or `DROP` at `start`.
fn procedure_keyword(toks: &[Token], start: usize) -> Option<usize> {
    let first = toks.get(start)?;
    if !(first.is(Kw::CREATE) || first.is(Kw::ALTER) || first.is(Kw::DROP)) {
        return None;
    }
    let mut i = start + 1;
    if first.is(Kw::CREATE) && toks.get(i).is_some_and(|t| t.is(Kw::OR)) {
        i += 2;
    }
    toks.get(i)
        .filter(|t| t.is(Kw::PROC) || t.is(Kw::PROCEDURE))
        .map(|_| i)
}

/// The batch creates, alters or drops a procedure: what Sluice knows of
/// the database's procedures is out of date.
pub fn changes_procedures(sql: &str) -> bool {
    let toks = lexer::tokenize(sql).toks;
    (0..toks.len()).any(|i| procedure_keyword(&toks, i).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_starts_after_the_headers_own_as() {
        let def = "CREATE PROCEDURE dbo.Get @id AS INT, @name NVARCHAR(10) = N'AS'\nWITH EXECUTE AS OWNER, RECOMPILE\nAS\nSELECT 1 AS x";
        let split = split_procedure(def).expect("a procedure");
        assert!(split.executes_as);
        assert_eq!(split.body.trim(), "SELECT 1 AS x");
        assert!(split.header.ends_with("RECOMPILE\n"));

        let plain = split_procedure("create or alter proc [s].[p] (@a int) as begin select @a end")
            .expect("a procedure");
        assert!(!plain.executes_as);
        assert_eq!(plain.body.trim(), "begin select @a end");
        // Comments and strings cannot hide or fake the AS.
        let commented = split_procedure("CREATE PROC p /* AS */ -- AS\n AS SELECT 'AS'").unwrap();
        assert_eq!(commented.body.trim(), "SELECT 'AS'");
    }

    #[test]
    fn what_is_not_a_procedure_definition() {
        assert_eq!(split_procedure("CREATE VIEW v AS SELECT 1"), None);
        assert_eq!(split_procedure("CREATE PROC p @a INT"), None);
        assert_eq!(
            split_procedure("CREATE PROC p AS SELECT 'unterminated"),
            None
        );
    }

    #[test]
    fn procedure_ddl_is_seen_anywhere_in_a_batch() {
        assert!(changes_procedures("CREATE PROCEDURE p AS SELECT 1"));
        assert!(changes_procedures(
            "SET NOCOUNT ON; ALTER PROC dbo.p AS SELECT 2"
        ));
        assert!(changes_procedures(
            "create or alter procedure p as select 1"
        ));
        assert!(changes_procedures("IF 1=1 DROP PROCEDURE IF EXISTS p"));
        assert!(!changes_procedures("EXEC p; SELECT 'CREATE PROC x'"));
        assert!(!changes_procedures("CREATE TABLE proc_log (id INT)"));
    }
}
