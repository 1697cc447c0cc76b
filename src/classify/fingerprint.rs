//! A statement's fingerprint for logs: its text with every string and
//! number literal replaced by `?`, comments dropped and whitespace
//! collapsed, so that the same statement with other values reads the same
//! and a log line never carries the values a client sent (they may be
//! personal data). Built from the classifier's own lexer, so a literal is
//! exactly what the keyword scan takes for one.

use super::lexer::{tokenize, Kind};

/// Longest fingerprint, in bytes; a longer one ends with `…`.
pub const MAX_FINGERPRINT_LEN: usize = 512;

/// `SELECT * FROM t WHERE id = 42 AND name = N'x' -- c` becomes
/// `SELECT * FROM t WHERE id = ? AND name = ?`. Text the lexer could not
/// close (an unterminated string or comment) is dropped from there on.
pub fn fingerprint(sql: &str) -> String {
    let tokens = tokenize(sql);
    let mut out = String::with_capacity(sql.len().min(MAX_FINGERPRINT_LEN));
    let mut previous_end = None;
    for token in &tokens.toks {
        // A gap between two tokens held whitespace or a comment: one space.
        if previous_end.is_some_and(|end| end < token.start) {
            out.push(' ');
        }
        previous_end = Some(token.end);
        match token.kind {
            Kind::Str | Kind::Number => out.push('?'),
            _ => out.push_str(token.text(sql)),
        }
        if out.len() > MAX_FINGERPRINT_LEN {
            truncate(&mut out);
            break;
        }
    }
    out
}

/// Cuts `text` to [`MAX_FINGERPRINT_LEN`] bytes at a character boundary.
fn truncate(text: &mut String) {
    let mut end = MAX_FINGERPRINT_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            fingerprint("SELECT * FROM t WHERE id = 42 AND name = N'it''s' AND x IN (1,2.5,0x1F)"),
            "SELECT * FROM t WHERE id = ? AND name = ? AND x IN (?,?,?)"
        );
    }

    #[test]
    fn comments_and_whitespace_collapse() {
        assert_eq!(
            fingerprint("  SELECT a,\n\tb /* why */ FROM dbo.t -- note\nWHERE [c] = @p"),
            "SELECT a, b FROM dbo.t WHERE [c] = @p"
        );
    }

    #[test]
    fn the_same_statement_with_other_values_has_one_fingerprint() {
        assert_eq!(
            fingerprint("SELECT v FROM t WHERE k = 'a'"),
            fingerprint("SELECT v  FROM t WHERE k = 'something else'")
        );
    }

    #[test]
    fn a_long_statement_is_cut_at_a_character_boundary() {
        let sql = format!("SELECT {}", "é".repeat(1000));
        let print = fingerprint(&sql);
        assert!(print.ends_with('…'));
        assert!(print.len() <= MAX_FINGERPRINT_LEN + '…'.len_utf8());
    }

    #[test]
    fn an_unterminated_string_reveals_nothing_after_it() {
        assert_eq!(fingerprint("SELECT 'secret"), "SELECT ?");
    }
}
