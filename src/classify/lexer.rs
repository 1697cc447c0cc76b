//! A fast T-SQL tokenizer for the keyword scan.
//!
//! It only needs to find the words that matter for routing, so it skips
//! everything that could hide one: `--` and nested `/* */` comments, string
//! literals (`'..'`, `N'..'`, doubled quotes), `[bracketed]` and `"quoted"`
//! identifiers. Tokens are spans into the input (one `Vec` per batch, no
//! allocation per token); keywords are looked up without allocating.

use std::sync::OnceLock;

/// What a token is; words carry a [`Kw`] when they are a keyword we care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Unquoted identifier or keyword (`SELECT`, `dbo`, `$action`).
    Word,
    /// `[identifier]` or `"identifier"`.
    Quoted,
    /// `'string'` or `N'string'`.
    Str,
    Number,
    /// `@local_variable` or `@parameter`.
    Var,
    /// `@@IDENTITY`, `@@SPID`, ...
    SysVar,
    /// `#temp` or `##global_temp`.
    Temp,
    /// Any other single character: `( ) , ; . = + :` ...
    Punct,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    pub kind: Kind,
    pub kw: Kw,
    /// The character for [`Kind::Punct`], 0 otherwise.
    pub punct: u8,
    /// Parenthesis depth outside the token (a `(` and its `)` share it).
    pub depth: u32,
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub fn is(&self, kw: Kw) -> bool {
        self.kind == Kind::Word && self.kw == kw
    }

    pub fn is_punct(&self, c: u8) -> bool {
        self.kind == Kind::Punct && self.punct == c
    }

    pub fn text<'a>(&self, sql: &'a str) -> &'a str {
        sql.get(self.start..self.end).unwrap_or("")
    }
}

/// A tokenized batch.
pub(super) struct Tokens {
    pub toks: Vec<Token>,
    /// An unterminated string, comment or quoted identifier: the server
    /// will reject the batch, and nothing after it can be trusted.
    pub unterminated: bool,
    /// A `)` without its `(`, or a `(` never closed: the server will
    /// reject the batch, and where its statements start cannot be trusted.
    pub unbalanced: bool,
    /// A `--` comment holds a carriage return not followed by a line feed.
    pub bare_cr_in_comment: bool,
}

pub(super) fn tokenize(sql: &str) -> Tokens {
    let b = sql.as_bytes();
    let mut toks = Vec::with_capacity(b.len() / 5 + 4);
    let mut unterminated = false;
    let mut unbalanced = false;
    let mut bare_cr = false;
    let mut depth: u32 = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = |kind, kw, punct, end: usize, depth| Token {
            kind,
            kw,
            punct,
            depth,
            start,
            end,
        };
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            // A byte-order mark (U+FEFF) or a no-break space (U+00A0) that an
            // editor left in the text: whitespace, not part of a word.
            0xef if b.get(i + 1..i + 3) == Some(&[0xbb, 0xbf]) => i += 3,
            0xc2 if b.get(i + 1) == Some(&0xa0) => i += 2,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = memchr(b'\n', b, i).unwrap_or(b.len());
                // Whether a bare CR ends a line comment is the server's
                // call: text after one may be code or comment, so a batch
                // with one is not classified at all.
                bare_cr |= b[i..end]
                    .iter()
                    .enumerate()
                    .any(|(k, &c)| c == b'\r' && b.get(i + k + 1) != Some(&b'\n'));
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => match skip_block_comment(b, i) {
                Some(end) => i = end,
                None => {
                    unterminated = true;
                    i = b.len();
                }
            },
            b'\'' => {
                let (end, ok) = skip_quoted(b, i, b'\'');
                unterminated |= !ok;
                toks.push(tok(Kind::Str, Kw::None, 0, end, depth));
                i = end;
            }
            b'N' | b'n' if b.get(i + 1) == Some(&b'\'') => {
                let (end, ok) = skip_quoted(b, i + 1, b'\'');
                unterminated |= !ok;
                toks.push(tok(Kind::Str, Kw::None, 0, end, depth));
                i = end;
            }
            b'[' => {
                let (end, ok) = skip_quoted(b, i, b']');
                unterminated |= !ok;
                toks.push(tok(Kind::Quoted, Kw::None, 0, end, depth));
                i = end;
            }
            b'"' => {
                let (end, ok) = skip_quoted(b, i, b'"');
                unterminated |= !ok;
                toks.push(tok(Kind::Quoted, Kw::None, 0, end, depth));
                i = end;
            }
            b'@' | b'#' if b.get(i + 1).is_some_and(|&n| is_ident_part(n) || n == c) => {
                let doubled = b.get(i + 1) == Some(&c);
                let end = word_end(b, i + 1 + usize::from(doubled));
                let kind = match (c, doubled) {
                    (b'@', true) => Kind::SysVar,
                    (b'@', false) => Kind::Var,
                    _ => Kind::Temp,
                };
                toks.push(tok(kind, Kw::None, 0, end, depth));
                i = end;
            }
            b'0'..=b'9' => {
                let end = number_end(b, i);
                toks.push(tok(Kind::Number, Kw::None, 0, end, depth));
                i = end;
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let end = number_end(b, i + 1);
                toks.push(tok(Kind::Number, Kw::None, 0, end, depth));
                i = end;
            }
            // A character outside ASCII that is neither a letter nor a digit
            // (a symbol, a combining accent) cannot be part of a name
            // [identifier rules: Unicode letters and decimal digits]: it is
            // punctuation, and a keyword right after it is a keyword.
            0xc0.. if non_word_len(b, i).is_some() => {
                let end = i + non_word_len(b, i).unwrap_or(1);
                toks.push(tok(Kind::Punct, Kw::None, 0, end, depth));
                i = end;
            }
            c if is_ident_start(c)
                || (c == b'$' && b.get(i + 1).is_some_and(|&n| is_ident_start(n))) =>
            {
                let end = word_end(b, i + 1);
                // After a dot a word is a member name (`t.update`), never a keyword.
                let member = toks.last().is_some_and(|t: &Token| t.is_punct(b'.'));
                let kw = if member {
                    Kw::None
                } else {
                    keyword(&b[i..end])
                };
                toks.push(tok(Kind::Word, kw, 0, end, depth));
                i = end;
            }
            _ => {
                if c == b')' {
                    unbalanced |= depth == 0;
                    depth = depth.saturating_sub(1);
                }
                toks.push(tok(Kind::Punct, Kw::None, c, i + 1, depth));
                if c == b'(' {
                    depth = depth.saturating_add(1);
                }
                // A multi-byte UTF-8 character that is not a letter start
                // never reaches here (bytes >= 0x80 start words), so `i + 1`
                // stays on a character boundary.
                i += 1;
            }
        }
    }
    Tokens {
        toks,
        unterminated,
        unbalanced: unbalanced || depth != 0,
        bare_cr_in_comment: bare_cr,
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_part(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'@' | b'#' | b'$') || c >= 0x80
}

/// The byte length of the character at `i` when it starts a character
/// outside ASCII that is neither alphabetic nor numeric; `None` for ASCII,
/// letters, digits and the middle of a character.
fn non_word_len(b: &[u8], i: usize) -> Option<usize> {
    let len = match b[i] {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return None,
    };
    let c = std::str::from_utf8(b.get(i..i + len)?)
        .ok()?
        .chars()
        .next()?;
    (!c.is_alphanumeric()).then_some(len)
}

fn word_end(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        let part = if c.is_ascii() {
            is_ident_part(c)
        } else {
            !is_unicode_space(b, i) && non_word_len(b, i).is_none()
        };
        if !part {
            break;
        }
        i += 1;
    }
    i
}

/// U+00A0 (no-break space) or U+FEFF (byte-order mark) starts at `b[i]`.
fn is_unicode_space(b: &[u8], i: usize) -> bool {
    match b[i] {
        0xc2 => b.get(i + 1) == Some(&0xa0),
        0xef => b.get(i + 1..i + 3) == Some(&[0xbb, 0xbf]),
        _ => false,
    }
}

/// Where a numeric literal ends, as SQL Server's lexer sees it: `0x` and
/// hex digits, or digits, an optional `.` and digits, and an exponent only
/// when digits follow it. Letters after that start a new token:
/// `SELECT 1DELETE FROM t` is `SELECT 1` then `DELETE FROM t`.
fn number_end(b: &[u8], mut i: usize) -> usize {
    let digits = |b: &[u8], mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        while b.get(i).is_some_and(u8::is_ascii_hexdigit) {
            i += 1;
        }
        return i;
    }
    i = digits(b, i);
    if b.get(i) == Some(&b'.') {
        i = digits(b, i + 1);
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
            i = digits(b, i + 1 + sign);
        }
    }
    i
}

fn memchr(needle: u8, b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?
        .iter()
        .position(|&c| c == needle)
        .map(|p| from + p)
}

/// Skips `/* ... */`, which nests in T-SQL. Returns the index after the
/// comment, or `None` when it never closes.
fn skip_block_comment(b: &[u8], mut i: usize) -> Option<usize> {
    let mut nesting = 0usize;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                nesting += 1;
                i += 2;
            }
            (b'*', b'/') => {
                nesting -= 1;
                i += 2;
                if nesting == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Skips a quoted run opened at `b[open]`, where the closing quote is
/// escaped by doubling it (`''`, `]]`, `""`). Returns (end, terminated).
fn skip_quoted(b: &[u8], open: usize, close: u8) -> (usize, bool) {
    let mut i = open + 1;
    while let Some(p) = memchr(close, b, i) {
        if b.get(p + 1) == Some(&close) {
            i = p + 2;
        } else {
            return (p + 1, true);
        }
    }
    (b.len(), false)
}

/// The value of a `[bracketed]`, `"quoted"` or plain identifier token.
pub(super) fn ident_value(sql: &str, tok: &Token) -> String {
    let text = tok.text(sql);
    if tok.kind != Kind::Quoted {
        return text.to_string();
    }
    let (inner, close) = match text.strip_prefix('[') {
        Some(inner) => (inner, "]"),
        None => (text.strip_prefix('"').unwrap_or(text), "\""),
    };
    // An unterminated identifier has no closing quote.
    let inner = inner.strip_suffix(close).unwrap_or(inner);
    inner.replace(&close.repeat(2), close)
}

/// The value of a `'string'` or `N'string'` token, quotes undoubled.
pub(super) fn string_value(sql: &str, tok: &Token) -> String {
    let text = tok.text(sql);
    let text = text.strip_prefix(['N', 'n']).unwrap_or(text);
    let inner = text
        .strip_prefix('\'')
        .map(|t| t.strip_suffix('\'').unwrap_or(t))
        .unwrap_or(text);
    inner.replace("''", "'")
}

macro_rules! keywords {
    ($($name:ident),* $(,)?) => {
        /// The keywords the scan reacts to (the rest are plain words).
        #[allow(clippy::upper_case_acronyms, non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum Kw { None, $($name),* }

        const KEYWORDS: &[(&str, Kw)] = &[$((stringify!($name), Kw::$name)),*];
    };
}

keywords! {
    ALL, ALTER, AND, APPLY, APP_NAME, AS, AT, BACKUP, BEGIN, BETWEEN, BREAK, BROWSE, BULK, CASE,
    CATCH, CHECKPOINT, CLOSE, COLLATE, COLUMNPROPERTY, COL_LENGTH, COL_NAME, COMMIT, COMMITTED,
    CONNECTIONPROPERTY, CONTEXT_INFO, CONTINUE, CONVERSATION, CREATE, CROSS, CRYPT_GEN_RANDOM,
    CURRENT_DATE, CURRENT_REQUEST_ID, CURRENT_TIMESTAMP, CURRENT_TRANSACTION_ID, CURRENT_USER,
    CURSOR, DATABASEPROPERTYEX, DBCC, DB_ID, DB_NAME, DEALLOCATE, DECLARE, DEFAULT, DELAY, DELETE,
    DENY, DIALOG, DISABLE, DISTRIBUTED, DROP, DUMP, ELSE, ENABLE, END, EXCEPT, EXEC, EXECUTE, FETCH,
    FOR, FROM, FULL, FUNCTION, GET, GETDATE, GETUTCDATE, GO, GOTO, GRANT, GROUP, HAS_PERMS_BY_NAME,
    HAVING, HOLDLOCK, HOST_ID, HOST_NAME, IDENTITY_INSERT, IDENT_CURRENT, IDENT_INCR, IDENT_SEED,
    IF, IMPLICIT_TRANSACTIONS, IN, INDEXPROPERTY, INDEX_COL, INNER, INSERT, INTERSECT, INTO, IS,
    ISOLATION, IS_MEMBER, IS_ROLEMEMBER, IS_SRVROLEMEMBER, JOIN, JSON, KILL, LEFT, LEVEL, LIKE,
    LOAD, MERGE, MIN_ACTIVE_ROWVERSION, MOVE, NEWID, NEWSEQUENTIALID, NEXT, NO, NOT, OBJECTPROPERTY,
    OBJECTPROPERTYEX, OBJECT_DEFINITION, OBJECT_ID, OBJECT_NAME, OBJECT_SCHEMA_NAME, OFF, ON, OPEN,
    OPENDATASOURCE, OPENQUERY, OPENROWSET, OPENXML, OPTION, OR, ORDER, ORIGINAL_DB_NAME,
    ORIGINAL_LOGIN, OUT, OUTER, OUTPUT, PERCENT, PERMISSIONS, PIVOT, PRINT, PROC, PROCEDURE,
    RAISERROR, RAND, READ, READTEXT, RECEIVE, RECONFIGURE, REPEATABLE, REPEATABLEREAD, RESTORE,
    RETURN, REVERT, REVOKE, RIGHT, ROLLBACK, ROW, ROWS, SAVE, SCHEMA_ID, SCHEMA_NAME,
    SCOPE_IDENTITY, SELECT, SEND, SERIALIZABLE, SESSIONPROPERTY, SESSION_CONTEXT, SESSION_USER, SET,
    SETUSER, SHUTDOWN, SNAPSHOT, STATISTICS, SUSER_ID, SUSER_NAME, SUSER_SID, SUSER_SNAME,
    SYSDATETIME, SYSDATETIMEOFFSET, SYSTEM_USER, SYSUTCDATETIME, TABLE, TABLESAMPLE, TABLOCK,
    TABLOCKX, THROW, TIME, TOP, TRAN, TRANSACTION, TRIGGER, TRUNCATE, TRY, TYPEPROPERTY, TYPE_ID,
    TYPE_NAME, UNCOMMITTED, UNION, UNPIVOT, UPDATE, UPDATETEXT, UPDLOCK, USE, USER, USER_ID,
    USER_NAME, USING, VALUE, VALUES, VIEW, WAITFOR, WHERE, WHILE, WINDOW, WITH, WORK, WRITETEXT,
    XACT_STATE, XLOCK, XML,
}

const MAX_KEYWORD_LEN: usize = 24;

/// The keywords grouped by length and first letter, so that a lookup
/// compares a word with the one to three keywords sharing both instead of
/// binary-searching all of them (a third of the scan's time went there).
struct KeywordTable {
    /// Sorted by (length, name).
    entries: Vec<(&'static str, Kw)>,
    /// `entries[start..end]` for each (length, letter): see [`bucket`].
    buckets: Vec<(u16, u16)>,
}

fn bucket(len: usize, first: u8) -> usize {
    len * 26 + usize::from(first.to_ascii_uppercase() - b'A')
}

fn keyword_table() -> &'static KeywordTable {
    static TABLE: OnceLock<KeywordTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut entries = KEYWORDS.to_vec();
        entries.sort_unstable_by_key(|(name, _)| (name.len(), *name));
        let mut buckets = vec![(0u16, 0u16); bucket(MAX_KEYWORD_LEN, b'Z') + 1];
        for (i, (name, _)) in entries.iter().enumerate() {
            let slot = &mut buckets[bucket(name.len(), name.as_bytes()[0])];
            let i = u16::try_from(i).expect("fewer than 65,536 keywords");
            if slot.1 == 0 {
                slot.0 = i;
            }
            slot.1 = i + 1;
        }
        KeywordTable { entries, buckets }
    })
}

fn keyword(word: &[u8]) -> Kw {
    let Some(&first) = word.first() else {
        return Kw::None;
    };
    if word.len() < 2 || word.len() > MAX_KEYWORD_LEN || !first.is_ascii_alphabetic() {
        return Kw::None;
    }
    let table = keyword_table();
    let (start, end) = table.buckets[bucket(word.len(), first)];
    table.entries[usize::from(start)..usize::from(end)]
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(word))
        .map_or(Kw::None, |&(_, kw)| kw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(Kind, String)> {
        tokenize(sql)
            .toks
            .iter()
            .map(|t| (t.kind, t.text(sql).to_string()))
            .collect()
    }

    #[test]
    fn skips_comments_strings_and_quoted_identifiers() {
        let sql = "SELECT /* UPDATE /* nested */ x */ N'it''s DELETE', [Up]]date], \"In\"\"sert\" -- DROP\nFROM t";
        let toks = kinds(sql);
        let words: Vec<_> = toks
            .iter()
            .filter(|(k, _)| *k == Kind::Word)
            .map(|(_, s)| s.as_str())
            .collect();
        assert_eq!(words, ["SELECT", "FROM", "t"]);
        assert!(toks.contains(&(Kind::Str, "N'it''s DELETE'".into())));
        assert!(toks.contains(&(Kind::Quoted, "[Up]]date]".into())));
        assert!(toks.contains(&(Kind::Quoted, "\"In\"\"sert\"".into())));
    }

    #[test]
    fn variables_temp_tables_and_keywords() {
        let sql = "select @x, @@IDENTITY, #t, ##g, a#b, $action FROM tempdb..#t2";
        let toks = tokenize(sql).toks;
        assert_eq!(toks[0].kw, Kw::SELECT);
        assert_eq!(toks[1].kind, Kind::Var);
        assert_eq!(toks[3].kind, Kind::SysVar);
        assert_eq!(toks[5].kind, Kind::Temp);
        assert_eq!(toks[7].kind, Kind::Temp);
        assert_eq!(toks[7].text(sql), "##g");
        assert_eq!(toks[9].kind, Kind::Word);
        assert_eq!(toks[9].text(sql), "a#b");
        assert_eq!(toks[11].kind, Kind::Word);
        assert_eq!(toks.last().map(|t| t.text(sql)), Some("#t2"));
    }

    #[test]
    fn depth_is_tracked_outside_parentheses() {
        let sql = "a (b (c) d) e";
        let d: Vec<_> = tokenize(sql).toks.iter().map(|t| t.depth).collect();
        assert_eq!(d, [0, 0, 1, 1, 2, 1, 1, 0, 0]);
    }

    #[test]
    fn unterminated_runs_are_reported() {
        for sql in ["SELECT 'abc", "SELECT [abc", "SELECT /* x", "SELECT \"x"] {
            assert!(tokenize(sql).unterminated, "{sql}");
        }
        assert!(!tokenize("SELECT 'a''b' -- x").unterminated);
    }

    #[test]
    fn values_are_unquoted() {
        let sql = "[a]]b] N'x''y' \"q\"\"r\"";
        let t = tokenize(sql).toks;
        assert_eq!(ident_value(sql, &t[0]), "a]b");
        assert_eq!(string_value(sql, &t[1]), "x'y");
        assert_eq!(ident_value(sql, &t[2]), "q\"r");
        for sql in ["[ab\u{e9}", "\"\u{e9}", "'\u{e9}", "N'", "[", "\""] {
            let t = tokenize(sql).toks;
            let _ = (ident_value(sql, &t[0]), string_value(sql, &t[0]));
        }
    }

    #[test]
    fn keyword_lookup_is_case_insensitive_and_exact() {
        assert_eq!(keyword(b"sElEcT"), Kw::SELECT);
        assert_eq!(keyword(b"SCOPE_IDENTITY"), Kw::SCOPE_IDENTITY);
        assert_eq!(keyword(b"SELECTS"), Kw::None);
        assert_eq!(keyword(b"S1"), Kw::None);
        assert_eq!(keyword(b"identity_insert"), Kw::IDENTITY_INSERT);
        assert_eq!(keyword(b"IDENT_CURRENT"), Kw::IDENT_CURRENT);
        for &(name, kw) in KEYWORDS {
            assert_eq!(keyword(name.as_bytes()), kw, "{name}");
            assert_eq!(keyword(name.to_lowercase().as_bytes()), kw, "{name}");
            let mut longer = name.to_string();
            longer.push('X');
            assert_ne!(keyword(longer.as_bytes()), kw, "{longer}");
            assert_eq!(keyword(&name.as_bytes()[1..]), keyword_named(&name[1..]));
        }
        for word in [
            "",
            "A",
            "_SELECT",
            "SEL\u{e9}CT",
            "1SELECT",
            "Z_______________________X",
        ] {
            assert_eq!(keyword(word.as_bytes()), Kw::None, "{word}");
        }
    }

    /// The keyword spelled exactly `name`, by a linear search.
    fn keyword_named(name: &str) -> Kw {
        KEYWORDS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or(Kw::None, |&(_, kw)| kw)
    }

    #[test]
    fn bom_and_no_break_space_are_whitespace() {
        let sql = "\u{feff}SELECT\u{a0}1";
        let t = tokenize(sql).toks;
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].kw, Kw::SELECT);
    }

    #[test]
    fn never_panics_on_multibyte_text() {
        let sql = "SELECT é, 'ü', [ß], N'日本', 日本 FROM t — x ∑(1)";
        let t = tokenize(sql);
        for tok in &t.toks {
            assert!(sql.get(tok.start..tok.end).is_some());
        }
    }
}
