//! Cutting a batch into statements (see the module docs of [`super`]).

use crate::classify::lexer::{Kind, Kw, Token};

/// One statement: a range of tokens and how it started.
#[derive(Debug, Clone)]
pub(super) struct Stmt {
    /// The leading keyword; `Kw::None` for anything else.
    pub(super) leader: Kw,
    pub(super) first: usize,
    pub(super) end: usize,
    /// `BEGIN`, `END`, `BEGIN TRY`, `ELSE`, `label:`: structure only.
    pub(super) block: bool,
    /// `CREATE/ALTER PROCEDURE|FUNCTION|TRIGGER|VIEW`: the rest of the batch.
    pub(super) module: bool,
    /// `INSERT`'s source or a CTE's main statement has been seen.
    pub(super) body_taken: bool,
    /// An `UPDATE` whose `SET` is still to come.
    pub(super) update_wants_set: bool,
}

/// Reserved words that start a statement wherever they appear at depth 0
/// (unless they continue the current one, see [`continues`]).
pub(super) fn is_reserved_leader(kw: Kw) -> bool {
    use Kw::*;
    matches!(
        kw,
        SELECT
            | INSERT
            | UPDATE
            | DELETE
            | MERGE
            | DECLARE
            | SET
            | IF
            | ELSE
            | WHILE
            | BEGIN
            | END
            | PRINT
            | RAISERROR
            | RETURN
            | BREAK
            | CONTINUE
            | GOTO
            | EXEC
            | EXECUTE
            | USE
            | COMMIT
            | ROLLBACK
            | SAVE
            | OPEN
            | FETCH
            | CLOSE
            | DEALLOCATE
            | WAITFOR
            | TRUNCATE
            | CREATE
            | ALTER
            | DROP
            | GRANT
            | REVOKE
            | DENY
            | DBCC
            | BACKUP
            | RESTORE
            | BULK
            | WRITETEXT
            | UPDATETEXT
            | READTEXT
            | KILL
            | SHUTDOWN
            | RECONFIGURE
            | CHECKPOINT
            | REVERT
            | SETUSER
            | LOAD
            | DUMP
    )
}

pub(super) fn is_ddl_leader(kw: Kw) -> bool {
    matches!(
        kw,
        Kw::GRANT | Kw::REVOKE | Kw::DENY | Kw::CREATE | Kw::ALTER | Kw::DROP
    )
}

/// Whether leader `kw` at depth 0 continues statement `cur` instead of
/// starting a new one.
fn continues(kw: Kw, cur: &Stmt, prev: Option<&Token>) -> bool {
    let prev_kw = prev
        .filter(|p| p.kind == Kind::Word)
        .map_or(Kw::None, |p| p.kw);
    let body_slot = !cur.body_taken && matches!(cur.leader, Kw::WITH | Kw::INSERT);
    match kw {
        Kw::SELECT => {
            body_slot
                || matches!(
                    prev_kw,
                    Kw::UNION | Kw::ALL | Kw::EXCEPT | Kw::INTERSECT | Kw::FOR
                )
        }
        Kw::INSERT | Kw::UPDATE | Kw::DELETE | Kw::MERGE => {
            (kw == Kw::UPDATE && prev_kw == Kw::FOR)
                || (cur.leader == Kw::WITH && !cur.body_taken)
                || (cur.leader == Kw::MERGE && kw != Kw::MERGE)
                || is_ddl_leader(cur.leader)
                || prev_kw == Kw::ON
        }
        Kw::SET => {
            cur.update_wants_set
                || matches!(cur.leader, Kw::ALTER | Kw::CREATE)
                || matches!(prev_kw, Kw::DELETE | Kw::UPDATE)
        }
        Kw::FETCH => matches!(prev_kw, Kw::ROW | Kw::ROWS),
        Kw::EXEC | Kw::EXECUTE => {
            (cur.leader == Kw::INSERT && !cur.body_taken) || is_ddl_leader(cur.leader)
        }
        Kw::IF => is_ddl_leader(cur.leader),
        // `EXECUTE AS USER = 'u' WITH NO REVERT`
        Kw::REVERT => prev_kw == Kw::NO,
        Kw::BULK => cur.leader == Kw::INSERT,
        Kw::BEGIN | Kw::END | Kw::ELSE => false,
        _ => is_ddl_leader(cur.leader) && is_ddl_leader(kw),
    }
}

pub(super) fn split(toks: &[Token]) -> Vec<Stmt> {
    let mut out = Vec::new();
    let mut cur: Option<Stmt> = None;
    let mut case_depth = 0u32;
    let mut skip_to = 0;
    for i in 0..toks.len() {
        let t = &toks[i];
        if i < skip_to {
            continue;
        }
        if let Some(c) = &mut cur {
            if c.module {
                c.end = i + 1;
                continue;
            }
        }
        if t.is_punct(b';') {
            close(&mut cur, &mut out);
            continue;
        }
        let mut kw = if t.kind == Kind::Word { t.kw } else { Kw::None };
        if kw == Kw::CASE {
            case_depth += 1;
        } else if kw == Kw::END && case_depth > 0 {
            case_depth -= 1;
            kw = Kw::None;
        } else if kw == Kw::ELSE && case_depth > 0 {
            kw = Kw::None;
        }
        let next_kw = toks
            .get(i + 1)
            .filter(|n| n.kind == Kind::Word)
            .map_or(Kw::None, |n| n.kw);
        let starts = t.depth == 0
            && match &cur {
                None => true,
                Some(c) => {
                    is_reserved_leader(kw) && !continues(kw, c, i.checked_sub(1).map(|p| &toks[p]))
                }
            };
        if starts {
            close(&mut cur, &mut out);
            let leader = if can_lead_at_start(kw) { kw } else { Kw::None };
            let mut stmt = Stmt {
                leader,
                first: i,
                end: i + 1,
                block: false,
                module: false,
                body_taken: false,
                update_wants_set: kw == Kw::UPDATE,
            };
            let block_len = match kw {
                Kw::BEGIN | Kw::END => match next_kw {
                    Kw::TRY | Kw::CATCH => Some(2),
                    Kw::TRAN
                    | Kw::TRANSACTION
                    | Kw::DISTRIBUTED
                    | Kw::DIALOG
                    | Kw::CONVERSATION => None,
                    _ => Some(1),
                },
                Kw::ELSE => Some(1),
                Kw::None
                    if t.kind == Kind::Word
                        && toks.get(i + 1).is_some_and(|n| n.is_punct(b':')) =>
                {
                    Some(2)
                }
                _ => None,
            };
            if let Some(len) = block_len {
                stmt.block = true;
                stmt.end = (i + len).min(toks.len());
                skip_to = stmt.end;
                out.push(stmt);
                continue;
            }
            if matches!(kw, Kw::CREATE | Kw::ALTER) {
                let mut j = i + 1;
                if toks.get(j).is_some_and(|t| t.is(Kw::OR)) {
                    j += 2;
                }
                stmt.module = toks.get(j).is_some_and(|t| {
                    t.kind == Kind::Word
                        && matches!(
                            t.kw,
                            Kw::PROC | Kw::PROCEDURE | Kw::FUNCTION | Kw::TRIGGER | Kw::VIEW
                        )
                });
            }
            cur = Some(stmt);
            continue;
        }
        if let Some(c) = &mut cur {
            c.end = i + 1;
            if t.depth == 0 {
                let after_for = i.checked_sub(1).is_some_and(|p| toks[p].is(Kw::FOR));
                match (c.leader, kw) {
                    (Kw::WITH, Kw::SELECT) if !c.body_taken => c.body_taken = true,
                    // A CTE's main statement is DML: it leads from here on,
                    // so `WITH c AS (..) INSERT INTO t SELECT ..` stays one.
                    (Kw::WITH, Kw::INSERT | Kw::UPDATE | Kw::DELETE | Kw::MERGE)
                        if !c.body_taken =>
                    {
                        c.leader = kw;
                        c.update_wants_set = kw == Kw::UPDATE;
                    }
                    (
                        Kw::INSERT,
                        Kw::SELECT | Kw::EXEC | Kw::EXECUTE | Kw::VALUES | Kw::DEFAULT,
                    ) => c.body_taken = true,
                    (_, Kw::UPDATE) if !after_for => c.update_wants_set = true,
                    (_, Kw::SET) => c.update_wants_set = false,
                    _ => {}
                }
            }
        }
    }
    close(&mut cur, &mut out);
    out
}

/// Non-reserved words lead a statement only where nothing else can be
/// (after `;`, at the start, after a block keyword); reserved ones always.
fn can_lead_at_start(kw: Kw) -> bool {
    is_reserved_leader(kw)
        || matches!(
            kw,
            Kw::WITH
                | Kw::THROW
                | Kw::SEND
                | Kw::RECEIVE
                | Kw::GET
                | Kw::MOVE
                | Kw::ENABLE
                | Kw::DISABLE
                | Kw::GO
        )
}

fn close(cur: &mut Option<Stmt>, out: &mut Vec<Stmt>) {
    if let Some(s) = cur.take() {
        out.push(s);
    }
}
