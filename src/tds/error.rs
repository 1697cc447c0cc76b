//! Decode errors of the wire codec. Every decoder returns one of these for bad
//! bytes from a socket; none of them panics.

/// Why a byte sequence could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a structure that needs more bytes.
    #[error("{context}: truncated, {needed} more byte(s) needed")]
    Truncated {
        context: &'static str,
        needed: usize,
    },
    /// The bytes are present but violate the protocol.
    #[error("{context}: {detail}")]
    Invalid {
        context: &'static str,
        detail: String,
    },
}

impl DecodeError {
    pub fn invalid(context: &'static str, detail: impl Into<String>) -> Self {
        DecodeError::Invalid {
            context,
            detail: detail.into(),
        }
    }
}
