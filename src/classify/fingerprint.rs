//! Statement fingerprints: the shape of a statement without its values, for
//! logs (and shadow mode's comparisons). Built from the classifier's lexer,
//! so a literal is whatever SQL Server would read as one.

use super::lexer::{tokenize, Kind, Kw, Token};

/// Longest fingerprint, in characters; a longer one ends with `…`.
pub const MAX_FINGERPRINT_CHARS: usize = 200;

/// `sql` with every literal replaced by `?`: strings (`'..'`, `N'..'`),
/// numbers (`42`, `3.5e2`, `-1`), binary (`0x1F`). Comments are dropped,
/// each run of whitespace and comments becomes one space, identifiers
/// (`[a b]`, `"x"`, `@p`, `#t`) and keywords stay as written. At most
/// [`MAX_FINGERPRINT_CHARS`] characters.
///
/// An unterminated string hides the rest of the text, as it would from the
/// server: no value escapes through a malformed batch.
pub fn fingerprint(sql: &str) -> String {
    let tokens = tokenize(sql).toks;
    let mut out = Fingerprint::default();
    let mut previous: Option<&Token> = None;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let gap = previous.is_some_and(|p| token.start > p.end);
        let next = tokens.get(i + 1);
        let piece = match token.kind {
            Kind::Str | Kind::Number => "?",
            // A sign before a number is part of the literal when nothing
            // it could be subtracted from comes before it: `= -1`, `(-1`.
            Kind::Punct
                if (token.punct == b'-' || token.punct == b'+')
                    && next.is_some_and(|n| n.kind == Kind::Number)
                    && !previous.is_some_and(is_operand) =>
            {
                i += 1;
                "?"
            }
            _ => token.text(sql),
        };
        if !out.push(gap, piece) {
            break;
        }
        previous = tokens.get(i);
        i += 1;
    }
    out.text
}

/// A token after which `-` or `+` is a binary operator.
fn is_operand(token: &Token) -> bool {
    match token.kind {
        Kind::Punct => token.punct == b')',
        // Keywords (`SELECT -1`, `VALUES`, `AND -1`) are not operands;
        // identifiers are. A word the lexer does not know as a keyword
        // (`THEN -1`) keeps its `-` in the fingerprint, not its value.
        Kind::Word => token.kw == Kw::None,
        Kind::Quoted | Kind::Str | Kind::Number | Kind::Var | Kind::SysVar | Kind::Temp => true,
    }
}

#[derive(Default)]
struct Fingerprint {
    text: String,
    chars: usize,
}

impl Fingerprint {
    /// Appends `piece` (after one space if `gap`); `false` once full.
    fn push(&mut self, gap: bool, piece: &str) -> bool {
        let room = MAX_FINGERPRINT_CHARS - self.chars;
        let needed = usize::from(gap) + piece.chars().count();
        if needed > room {
            if room == 0 {
                // Exactly full and more follows: the last character goes.
                self.text.pop();
                self.text.push('…');
                return false;
            }
            let fits = room.saturating_sub(1);
            if gap && fits > 0 {
                self.text.push(' ');
            }
            let rest = fits.saturating_sub(usize::from(gap));
            self.text.extend(piece.chars().take(rest));
            self.text.push('…');
            self.chars = MAX_FINGERPRINT_CHARS;
            return false;
        }
        if gap {
            self.text.push(' ');
        }
        self.text.push_str(piece);
        self.chars += needed;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders() {
        let sql =
            "SELECT * FROM t WHERE a = 'secret' AND b = N'x' AND c = 0x1F AND d IN (42, 3.5e2, .5)";
        assert_eq!(
            fingerprint(sql),
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ? AND d IN (?, ?, ?)"
        );
    }

    #[test]
    fn doubled_quotes_and_unicode_stay_inside_the_literal() {
        let fp = fingerprint("UPDATE u SET pwd = N'it''s s3cr\u{e9}t' WHERE id = 7");
        assert_eq!(fp, "UPDATE u SET pwd = ? WHERE id = ?");
    }

    #[test]
    fn negative_numbers_are_one_literal() {
        assert_eq!(fingerprint("SELECT -1, +2"), "SELECT ?, ?");
        assert_eq!(
            fingerprint("WHERE a = -42 AND b=(-3.5)"),
            "WHERE a = ? AND b=(?)"
        );
        assert_eq!(fingerprint("VALUES (-1)"), "VALUES (?)");
        // Subtraction keeps its operator.
        assert_eq!(
            fingerprint("SELECT a - 1, a-1, (a)-1"),
            "SELECT a - ?, a-?, (a)-?"
        );
        assert_eq!(fingerprint("SELECT @x -1"), "SELECT @x -?");
    }

    #[test]
    fn comments_are_dropped_and_whitespace_collapsed() {
        let sql = "/* sluice:replica */ SELECT\n\t a,  -- 'why'\r\n b /* x /* nested */ */FROM t";
        assert_eq!(fingerprint(sql), "SELECT a, b FROM t");
        assert_eq!(fingerprint("  SELECT 1  "), "SELECT ?");
        assert_eq!(fingerprint("a/**/b"), "a b");
    }

    #[test]
    fn quoted_identifiers_variables_and_temp_tables_are_kept() {
        let sql = "SELECT [a b], \"x\", @p1, @@ROWCOUNT, t.[c]]d] FROM #t JOIN ##g ON 1=1";
        assert_eq!(
            fingerprint(sql),
            "SELECT [a b], \"x\", @p1, @@ROWCOUNT, t.[c]]d] FROM #t JOIN ##g ON ?=?"
        );
    }

    #[test]
    fn an_unterminated_string_hides_the_rest() {
        assert_eq!(fingerprint("SELECT 'abc; DROP TABLE t"), "SELECT ?");
        assert_eq!(fingerprint("SELECT 1 /* 'x'"), "SELECT ?");
    }

    #[test]
    fn long_statements_are_cut_at_the_limit() {
        let sql = format!("SELECT {} FROM t", vec!["column_name"; 100].join(", "));
        let fp = fingerprint(&sql);
        assert_eq!(fp.chars().count(), MAX_FINGERPRINT_CHARS);
        assert!(fp.ends_with('…'));
        assert!(fp.starts_with("SELECT column_name, column_name"));
        let wide = format!("SELECT [{}]", "\u{e9}".repeat(500));
        let fp = fingerprint(&wide);
        assert_eq!(fp.chars().count(), MAX_FINGERPRINT_CHARS);
        // A token that fills the limit exactly, then more text.
        let exact = format!("SELECT {} x", "a".repeat(MAX_FINGERPRINT_CHARS - 7));
        let fp = fingerprint(&exact);
        assert_eq!(fp.chars().count(), MAX_FINGERPRINT_CHARS);
        assert!(fp.ends_with('…'));
        let fits = format!("SELECT {}", "a".repeat(MAX_FINGERPRINT_CHARS - 7));
        assert_eq!(fingerprint(&fits), fits);
        assert!(fingerprint("SELECT 1").chars().count() < MAX_FINGERPRINT_CHARS);
    }

    #[test]
    fn same_shape_same_fingerprint() {
        assert_eq!(
            fingerprint("SELECT name FROM users WHERE id = 1"),
            fingerprint("SELECT name  FROM users\nWHERE id = 99 -- again")
        );
        assert_eq!(fingerprint(""), "");
    }
}
