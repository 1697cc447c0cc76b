//! Token streams [MS-TDS 2.2.7]: the tokens a server writes in a tabular
//! response, encoders for the ones the proxy writes itself, and a resumable
//! walker that follows a response across packets without buffering values.
pub mod done;
pub mod env_change;
pub mod feature_ext_ack;
pub mod login_ack;
pub mod message;
pub mod row;
pub mod row_digest;
pub mod walker;

mod col_metadata;
mod return_value;
pub mod type_info;

pub use done::{Done, DoneKind, DoneStatus};
pub use env_change::EnvChange;
pub use feature_ext_ack::FeatureExtAck;
pub use login_ack::LoginAck;
pub use message::ServerMessage;
pub use row::{BatchReply, SqlValue};
pub use row_digest::RowsDigest;
pub use walker::{TokenEvent, TokenWalker, DEFAULT_MAX_BUFFERED};

/// The token type byte that starts every token [MS-TDS 2.2.4.2, 2.2.7].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenType(pub u8);

impl TokenType {
    /// [2.2.7.1] COMPUTE metadata (removed in SQL Server 2012).
    pub const ALTMETADATA: TokenType = TokenType(0x88);
    /// [2.2.7.2] COMPUTE row (removed in SQL Server 2012).
    pub const ALTROW: TokenType = TokenType(0xD3);
    /// [2.2.7.3]
    pub const COLINFO: TokenType = TokenType(0xA5);
    /// [2.2.7.4]
    pub const COLMETADATA: TokenType = TokenType(0x81);
    /// [2.2.7.5] Only sent when the client negotiated data classification.
    pub const DATACLASSIFICATION: TokenType = TokenType(0xA3);
    /// [2.2.7.6]
    pub const DONE: TokenType = TokenType(0xFD);
    /// [2.2.7.8]
    pub const DONEPROC: TokenType = TokenType(0xFE);
    /// [2.2.7.7]
    pub const DONEINPROC: TokenType = TokenType(0xFF);
    /// [2.2.7.9]
    pub const ENVCHANGE: TokenType = TokenType(0xE3);
    /// [2.2.7.10]
    pub const ERROR: TokenType = TokenType(0xAA);
    /// [2.2.7.11]
    pub const FEATUREEXTACK: TokenType = TokenType(0xAE);
    /// [2.2.7.12]
    pub const FEDAUTHINFO: TokenType = TokenType(0xEE);
    /// [2.2.7.13]
    pub const INFO: TokenType = TokenType(0xAB);
    /// [2.2.7.14]
    pub const LOGINACK: TokenType = TokenType(0xAD);
    /// [2.2.7.15]
    pub const NBCROW: TokenType = TokenType(0xD2);
    /// [2.2.7.16]
    pub const OFFSET: TokenType = TokenType(0x78);
    /// [2.2.7.17]
    pub const ORDER: TokenType = TokenType(0xA9);
    /// [2.2.7.18]
    pub const RETURNSTATUS: TokenType = TokenType(0x79);
    /// [2.2.7.19]
    pub const RETURNVALUE: TokenType = TokenType(0xAC);
    /// [2.2.7.20]
    pub const ROW: TokenType = TokenType(0xD1);
    /// [2.2.7.21]
    pub const SESSIONSTATE: TokenType = TokenType(0xE4);
    /// [2.2.7.22]
    pub const SSPI: TokenType = TokenType(0xED);
    /// [2.2.7.23]
    pub const TABNAME: TokenType = TokenType(0xA4);
}

/// The longest prefix of `s` that fits in `max_units` UTF-16 code units,
/// cut at a character boundary so a surrogate pair is never split.
pub(crate) fn fit_utf16(s: &str, max_units: usize) -> &str {
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > max_units {
            return &s[..i];
        }
    }
    s
}

/// Appends `token_type`, a USHORT length and the body written by `body`
/// [2.2.4.2.1.3 variable-length tokens]. Callers bound their fields so the
/// body fits in 65535 bytes; a longer body would not be representable.
pub(crate) fn put_u16_token(
    out: &mut Vec<u8>,
    token_type: TokenType,
    body: impl FnOnce(&mut Vec<u8>),
) {
    out.push(token_type.0);
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    body(out);
    let len = out.len() - len_at - 2;
    debug_assert!(len <= u16::MAX as usize, "token body of {len} bytes");
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    out[len_at..len_at + 2].copy_from_slice(&len.to_le_bytes());
}

#[cfg(test)]
mod no_panic;
#[cfg(test)]
mod test_responses;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_utf16_never_splits_a_surrogate_pair() {
        assert_eq!(fit_utf16("abc", 2), "ab");
        assert_eq!(fit_utf16("a😀b", 2), "a");
        assert_eq!(fit_utf16("a😀b", 3), "a😀");
        assert_eq!(fit_utf16("", 0), "");
    }

    #[test]
    fn put_u16_token_writes_the_body_length() {
        let mut out = vec![0x99];
        put_u16_token(&mut out, TokenType::INFO, |b| {
            b.extend_from_slice(&[1, 2, 3])
        });
        assert_eq!(out, [0x99, 0xAB, 3, 0, 1, 2, 3]);
    }
}
