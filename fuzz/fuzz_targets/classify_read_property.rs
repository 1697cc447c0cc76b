//! Classifier safety property: a batch the classifier calls `Class::Read`
//! contains nothing that writes. A wrong `Read` sends a write to a replica
//! (where it fails, or worse, succeeds on a writable secondary), so this is
//! the one classification error that must never happen; sending a read to
//! the primary only costs load.
//!
//! The evidence is found by a small tokenizer written here, independent of
//! the classifier's lexer and of sqlparser, so the property is not checked
//! by the code under test. It skips what the server skips: `--` and nested
//! `/* */` comments, 'strings' (with ''), [brackets] (with ]]) and "quoted"
//! names (with ""). Outside of those, a `Read` batch must not contain:
//! - INSERT, DELETE, MERGE or UPDATE, except on a table variable (`INSERT
//!   INTO @t`), and except `FOR UPDATE` (a cursor's locking clause), which
//!   the classifier must flag as a locking hint;
//! - a reserved word that writes or administers: CREATE, ALTER, DROP,
//!   TRUNCATE, GRANT, REVOKE, DENY, BULK, BACKUP, RESTORE, DBCC, KILL,
//!   SHUTDOWN, RECONFIGURE, CHECKPOINT, WRITETEXT, UPDATETEXT, SETUSER
//!   (OUTPUT is not reserved: it is a clause only inside INSERT, UPDATE,
//!   DELETE or MERGE, which are checked themselves, and a name elsewhere);
//! - INTO after SELECT (`SELECT ... INTO` creates a table); after FETCH
//!   (cursor variables) it must be flagged as a cursor;
//! - EXEC/EXECUTE of a procedure that is not declared read-only, or of a
//!   variable; `sp_executesql` and `EXEC('...')` are allowed only with
//!   literal SQL, which must satisfy this property in turn;
//! - a procedure called without EXEC (a batch whose first word is not a
//!   statement keyword: SQL Server runs `sp_rename 'a', 'b'` as a call)
//!   that the same rules would not allow after EXEC.
//!
//! A `Read` may carry HOLDLOCK, a `WITH (UPDLOCK | XLOCK | TABLOCKX ...)`
//! table hint or NEXT VALUE FOR only with the flag that keeps it off the
//! replicas (LOCKING_HINT, SEQUENCE): the class alone does not route it.
//!
//! Non-reserved words that can write (RECEIVE, SEND of Service Broker) are
//! also valid column names, so they are not checked: a `Read` holding them
//! would be a false alarm here as often as a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::classify::{Class, Classification, Classifier, Flags};
use std::sync::OnceLock;

/// The corpus' read-only list (tests/corpus/read_only_procedures.txt), so
/// that seeds from the corpus call both listed and unlisted procedures.
const READ_ONLY_PROCEDURES: [&str; 3] = [
    "dbo.GetOrderSummary",
    "reporting.usp_SalesByMonth",
    "ReportTopProducts",
];

/// Dynamic SQL nested deeper than this is not followed (the classifier
/// gives up at a smaller depth and calls it a write).
const MAX_DEPTH: usize = 8;

fn classifier() -> &'static Classifier {
    static CLASSIFIER: OnceLock<Classifier> = OnceLock::new();
    CLASSIFIER.get_or_init(|| {
        let procedures: Vec<String> = READ_ONLY_PROCEDURES.map(String::from).to_vec();
        // No cache: every input is classified from scratch.
        Classifier::new(0, &procedures)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let c = classifier().classify(sql);
    if c.class != Class::Read {
        return;
    }
    if let Err(why) = check(sql, &c, 0) {
        panic!("classified Read but {why}\n  sql: {sql:?}\n  => {c:?}");
    }
});

/// Whether `sql` may be what a `Read` classification `c` says it is.
fn check(sql: &str, c: &Classification, depth: usize) -> Result<(), String> {
    let tokens = tokenize(sql);
    let words: Vec<Option<String>> = tokens
        .iter()
        .map(|t| match t {
            Token::Word(w) => Some(w.to_ascii_uppercase()),
            _ => None,
        })
        .collect();
    let word = |i: usize| words.get(i).and_then(|w| w.as_deref());

    // Unbalanced parentheses are checked too: the classifier calls such a
    // batch Unknown (it once called `SELECT (1; DELETE FROM t` a Read).
    let mut parens = 0usize;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Punct('(') => parens += 1,
            Token::Punct(')') => parens = parens.saturating_sub(1),
            _ => {}
        }
        let Token::Word(_) = token else { continue };
        let w = word(i).unwrap_or_default();
        // A name part after a dot (`t.[delete]`, `x.Update`) is not a keyword.
        if i > 0 && tokens[i - 1] == Token::Punct('.') {
            continue;
        }
        // An administrative statement cannot start inside parentheses
        // (SQL Server refuses `SELECT COALESCE(1, DBCC ...)`); DML can
        // (`FROM (DELETE ... OUTPUT ...)`), and is checked below at any depth.
        if parens == 0 && WRITE_WORDS.contains(&w) {
            return Err(format!("contains {w}"));
        }
        match w {
            // DML on a table variable (`INSERT INTO @t ...`, `DELETE @t`)
            // changes nothing outside the batch: a replica may run it.
            "INSERT" | "DELETE" | "MERGE" | "UPDATE"
                if dml_on_table_variable(&tokens, &words, i) => {}
            "INSERT" | "DELETE" | "MERGE" => return Err(format!("contains {w}")),
            "UPDATE" => {
                if i == 0 || word(i - 1) != Some("FOR") {
                    return Err("contains UPDATE".into());
                }
                require(c, Flags::LOCKING_HINT, "FOR UPDATE")?;
            }
            // `INTO @var` creates nothing: a table variable cannot be the
            // target of SELECT INTO, so it is FETCH's (variables to fill).
            "INTO" if tokens.get(i + 1) == Some(&Token::Variable) => {}
            "INTO" => {
                let owner = words[..i]
                    .iter()
                    .rev()
                    .flatten()
                    .find(|w| INTO_OWNERS.contains(&w.as_str()));
                match owner.map(String::as_str) {
                    Some("FETCH") => require(c, Flags::CURSOR, "FETCH INTO")?,
                    // Their target was checked at the INSERT / MERGE.
                    Some("INSERT" | "MERGE") => {}
                    owner => return Err(format!("contains INTO after {owner:?}")),
                }
            }
            // HOLDLOCK is reserved, so it is a hint wherever it stands; the
            // others are ordinary names (a column `updlock`) outside of a
            // table hint list.
            "HOLDLOCK" => require(c, Flags::LOCKING_HINT, w)?,
            "UPDLOCK" | "XLOCK" | "TABLOCKX" if in_table_hints(&tokens, &words, i) => {
                require(c, Flags::LOCKING_HINT, w)?
            }
            "NEXT" if word(i + 1) == Some("VALUE") && word(i + 2) == Some("FOR") => {
                require(c, Flags::SEQUENCE, "NEXT VALUE FOR")?
            }
            "EXEC" | "EXECUTE" => check_exec(&tokens, i + 1, c, depth)?,
            _ => {}
        }
    }
    // Checked last, so that a batch starting with a keyword that writes is
    // reported as such. Dynamic SQL is a batch of its own:
    // `EXEC('sp_rename ...')` is a call too.
    if let Some(first) = tokens.first() {
        let starts_call = match first {
            Token::Word(_) => !STATEMENT_STARTS.contains(&word(0).unwrap_or_default()),
            Token::Quoted(_) => true,
            _ => false,
        };
        // `label:` is not a call. A call is held to EXEC's rules: a
        // listed read-only procedure, or sp_executesql of literal SQL.
        if starts_call && tokens.get(1) != Some(&Token::Punct(':')) {
            return check_exec(&tokens, 0, c, depth)
                .map_err(|why| format!("starts with {first:?}, an implicit call: {why}"));
        }
    }

    Ok(())
}

/// `INSERT [INTO] @t`, `DELETE [FROM] @t`, `MERGE [INTO] @t`, `UPDATE @t`
/// at `tokens[i]`, each optionally with `TOP (n) [PERCENT]` after the verb.
fn dml_on_table_variable(tokens: &[Token], words: &[Option<String>], i: usize) -> bool {
    let mut target = i + 1;
    if words.get(target).and_then(|w| w.as_deref()) == Some("TOP")
        && tokens.get(target + 1) == Some(&Token::Punct('('))
    {
        let mut depth = 0usize;
        target += 1;
        while let Some(token) = tokens.get(target) {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => depth -= 1,
                _ => {}
            }
            target += 1;
            if depth == 0 {
                break;
            }
        }
        if words.get(target).and_then(|w| w.as_deref()) == Some("PERCENT") {
            target += 1;
        }
    }
    if matches!(
        words.get(target).and_then(|w| w.as_deref()),
        Some("INTO" | "FROM")
    ) {
        target += 1;
    }
    tokens.get(target) == Some(&Token::Variable)
}

/// Whether `tokens[i]` is in a `WITH (hint, hint ...)` list.
fn in_table_hints(tokens: &[Token], words: &[Option<String>], i: usize) -> bool {
    let mut j = i;
    while j >= 2 && tokens[j - 1] == Token::Punct(',') && matches!(tokens[j - 2], Token::Word(_)) {
        j -= 2;
    }
    j >= 2 && tokens[j - 1] == Token::Punct('(') && words[j - 2].as_deref() == Some("WITH")
}

fn require(c: &Classification, flag: Flags, what: &str) -> Result<(), String> {
    if c.flags.contains(flag) {
        Ok(())
    } else {
        Err(format!("contains {what} without flag {flag:?}"))
    }
}

/// EXEC at `tokens[at..]`: `[@status =] name args`, `(literal + ...)`.
fn check_exec(
    tokens: &[Token],
    mut at: usize,
    c: &Classification,
    depth: usize,
) -> Result<(), String> {
    if let (Some(Token::Variable), Some(Token::Punct('='))) = (tokens.get(at), tokens.get(at + 1)) {
        at += 2;
    }
    match tokens.get(at) {
        // Nothing runs: the batch does not compile.
        None => Ok(()),
        Some(Token::Punct('(')) => {
            let mut text = String::new();
            for token in &tokens[at + 1..] {
                match token {
                    Token::Punct(')') => return inner(&text, c, depth),
                    Token::Punct('+') => {}
                    Token::Str(s) => text.push_str(s),
                    // N'...': the prefix is a word of its own here.
                    Token::Word(w) if w.eq_ignore_ascii_case("N") => {}
                    other => return Err(format!("EXEC of non-literal SQL ({other:?})")),
                }
            }
            Ok(())
        }
        Some(Token::Word(_) | Token::Quoted(_)) => {
            let mut parts = Vec::new();
            let mut i = at;
            loop {
                match tokens.get(i) {
                    Some(Token::Word(p) | Token::Quoted(p)) => parts.push(p.to_lowercase()),
                    // `db..proc`: the empty part is the default schema.
                    Some(Token::Punct('.')) if tokens.get(i - 1) == Some(&Token::Punct('.')) => {
                        parts.push(String::new());
                        i += 1;
                        continue;
                    }
                    _ => break,
                }
                if tokens.get(i + 1) != Some(&Token::Punct('.')) {
                    break;
                }
                i += 2;
            }
            if parts.last().map(String::as_str) == Some("sp_executesql") {
                return check_executesql(tokens.get(i + 1..).unwrap_or_default(), c, depth);
            }
            if read_only(&parts) {
                Ok(())
            } else {
                Err(format!("EXEC of {parts:?}, not declared read-only"))
            }
        }
        Some(other) => Err(format!("EXEC of {other:?}")),
    }
}

/// sp_executesql's first argument `[@stmt =] N'...'` is the SQL it runs.
fn check_executesql(args: &[Token], c: &Classification, depth: usize) -> Result<(), String> {
    let mut args = args;
    if let (Some(Token::Variable), Some(Token::Punct('='))) = (args.first(), args.get(1)) {
        args = &args[2..];
    }
    if let Some(Token::Word(w)) = args.first() {
        if w.eq_ignore_ascii_case("N") {
            args = &args[1..];
        }
    }
    match args.first() {
        Some(Token::Str(s)) => inner(s, c, depth),
        None => Ok(()),
        Some(other) => Err(format!("sp_executesql of non-literal SQL ({other:?})")),
    }
}

fn inner(text: &str, c: &Classification, depth: usize) -> Result<(), String> {
    if depth >= MAX_DEPTH {
        return Err("dynamic SQL nested too deeply".into());
    }
    check(text, c, depth + 1).map_err(|e| format!("runs dynamic SQL that {e}"))
}

/// The configured-name rules of `Classifier::new`, applied leniently (a
/// call is taken as listed when any reading of the rules lists it), so that
/// a disagreement here is a real write, not a name-resolution detail.
fn read_only(call: &[String]) -> bool {
    if call.is_empty() || call.len() > 3 {
        return false;
    }
    READ_ONLY_PROCEDURES.iter().any(|configured| {
        let configured: Vec<String> = configured.split('.').map(str::to_lowercase).collect();
        match configured.len() {
            1 => call.last() == configured.last(),
            2 => {
                let schema = call.len().checked_sub(2).map(|s| call[s].as_str());
                call.last() == configured.last()
                    && (matches!(schema, None | Some("")) || schema == Some(&configured[0]))
            }
            _ => call == configured.as_slice(),
        }
    })
}

/// Reserved words whose presence outside comments and literals means the
/// batch writes or administers the server.
/// (INSERT, DELETE, MERGE and UPDATE are checked with their target.)
const WRITE_WORDS: &[&str] = &[
    "CREATE",
    "ALTER",
    "DROP",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "DENY",
    "BULK",
    "BACKUP",
    "RESTORE",
    "DBCC",
    "KILL",
    "SHUTDOWN",
    "RECONFIGURE",
    "CHECKPOINT",
    "WRITETEXT",
    "UPDATETEXT",
    "SETUSER",
];

/// Statements an INTO can belong to; only FETCH ... INTO @v is a read.
const INTO_OWNERS: &[&str] = &["SELECT", "FETCH", "INSERT", "MERGE", "OUTPUT"];

/// Words a batch may start with that are not a procedure call.
const STATEMENT_STARTS: &[&str] = &[
    "SELECT",
    // DML starts a statement; whether it writes is checked on its own.
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "WITH",
    "DECLARE",
    "SET",
    "IF",
    "ELSE",
    "BEGIN",
    "END",
    "WHILE",
    "PRINT",
    "FETCH",
    "OPEN",
    "CLOSE",
    "DEALLOCATE",
    "EXEC",
    "EXECUTE",
    "RETURN",
    "WAITFOR",
    "RAISERROR",
    "THROW",
    "GOTO",
    "BREAK",
    "CONTINUE",
    "USE",
    "COMMIT",
    "ROLLBACK",
    "SAVE",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A keyword or an unquoted name.
    Word(String),
    /// A [bracketed] or "quoted" name, unescaped.
    Quoted(String),
    /// A 'string' literal, unescaped (an N prefix is a `Word` before it).
    Str(String),
    /// `@name`, `@@name`.
    Variable,
    /// `#temp`, `##global`.
    Temp,
    Number,
    Punct(char),
}

/// T-SQL lexing as the server does it, reduced to what the property needs.
fn tokenize(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let is_word = |c: char| c.is_alphanumeric() || matches!(c, '_' | '@' | '#' | '$');
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' && chars[i] != '\r' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in T-SQL; an unterminated one runs to the end.
            let mut level = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    level += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    level -= 1;
                    i += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '\'' || c == '[' || c == '"' {
            let close = if c == '[' { ']' } else { c };
            let (text, end) = delimited(&chars, i + 1, close);
            tokens.push(if c == '\'' {
                Token::Str(text)
            } else {
                Token::Quoted(text)
            });
            i = end;
        } else if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
            i = number_end(&chars, i);
            tokens.push(Token::Number);
        } else if is_word(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i]) {
                i += 1;
            }
            tokens.push(match c {
                '@' => Token::Variable,
                '#' => Token::Temp,
                _ => Token::Word(chars[start..i].iter().collect()),
            });
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Text up to `close` (a doubled `close` is one character) and the index
/// after it; an unterminated literal runs to the end of the batch.
fn delimited(chars: &[char], mut i: usize, close: char) -> (String, usize) {
    let mut text = String::new();
    while i < chars.len() {
        if chars[i] == close {
            if chars.get(i + 1) == Some(&close) {
                text.push(close);
                i += 2;
                continue;
            }
            return (text, i + 1);
        }
        text.push(chars[i]);
        i += 1;
    }
    (text, i)
}

/// End of a numeric literal: `0x` hex, or digits, `.`, digits and an
/// exponent. SQL Server ends the number there, so `1DELETE` is `1` then
/// the keyword DELETE.
fn number_end(chars: &[char], mut i: usize) -> usize {
    let digits = |mut i: usize| {
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    if chars[i] == '0' && matches!(chars.get(i + 1), Some('x' | 'X')) {
        i += 2;
        while i < chars.len() && chars[i].is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    i = digits(i);
    if chars.get(i) == Some(&'.') {
        i = digits(i + 1);
    }
    if matches!(chars.get(i), Some('e' | 'E')) {
        let mut j = i + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        i = digits(j);
    }
    i
}
