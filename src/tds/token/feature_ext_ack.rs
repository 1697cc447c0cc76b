//! FEATUREEXTACK [MS-TDS 2.2.7.11]: the server's answers to the LOGIN7
//! FeatureExt options. The token has no length: FeatureAckOpt entries follow
//! the token type until the terminator 0xFF.

use super::TokenType;
use crate::tds::error::DecodeError;
use crate::tds::read::Reader;

/// FeatureId that ends the list.
pub const TERMINATOR: u8 = 0xFF;

/// The acknowledged features, in wire order: (FeatureId, FeatureAckData).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FeatureExtAck {
    pub features: Vec<(u8, Vec<u8>)>,
}

impl FeatureExtAck {
    /// Appends the whole token and the terminator. A feature whose id is the
    /// terminator (0xFF) cannot be represented and is not written.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(TokenType::FEATUREEXTACK.0);
        for (id, data) in self.features.iter().filter(|(id, _)| *id != TERMINATOR) {
            out.push(*id);
            let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&data[..len as usize]);
        }
        out.push(TERMINATOR);
    }

    /// Decodes the bytes after the token type, which must end with the
    /// terminator.
    pub fn decode(body: &[u8]) -> Result<FeatureExtAck, DecodeError> {
        let mut r = Reader::new(body, "FEATUREEXTACK");
        let ack = FeatureExtAck::read(&mut r)?;
        if r.remaining() != 0 {
            return Err(DecodeError::invalid(
                "FEATUREEXTACK",
                "bytes after the terminator",
            ));
        }
        Ok(ack)
    }

    /// Reads entries up to and including the terminator.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<FeatureExtAck, DecodeError> {
        let mut features = Vec::new();
        loop {
            let id = r.u8()?;
            if id == TERMINATOR {
                return Ok(FeatureExtAck { features });
            }
            let len = r.u32_le()? as usize;
            features.push((id, r.take(len)?.to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_known_bytes() {
        // UTF8_SUPPORT (0x0A) acknowledged with value 1, then the terminator.
        let body = [0x0A, 1, 0, 0, 0, 0x01, 0xFF];
        let ack = FeatureExtAck::decode(&body).unwrap();
        assert_eq!(ack.features, vec![(0x0A, vec![1])]);
        let mut out = Vec::new();
        ack.encode(&mut out);
        assert_eq!(out[0], 0xAE);
        assert_eq!(&out[1..], &body);
    }

    #[test]
    fn round_trip() {
        let ack = FeatureExtAck {
            features: vec![(0x01, vec![7; 300]), (0x04, vec![]), (0x0A, vec![1])],
        };
        let mut out = Vec::new();
        ack.encode(&mut out);
        assert_eq!(FeatureExtAck::decode(&out[1..]).unwrap(), ack);
        let empty = FeatureExtAck::default();
        let mut out = Vec::new();
        empty.encode(&mut out);
        assert_eq!(out, [0xAE, 0xFF]);
        assert_eq!(FeatureExtAck::decode(&out[1..]).unwrap(), empty);
    }

    #[test]
    fn terminator_id_is_not_written() {
        let ack = FeatureExtAck {
            features: vec![(0xFF, vec![1, 2]), (0x02, vec![3])],
        };
        let mut out = Vec::new();
        ack.encode(&mut out);
        let back = FeatureExtAck::decode(&out[1..]).unwrap();
        assert_eq!(back.features, vec![(0x02, vec![3])]);
    }

    #[test]
    fn missing_terminator_or_trailing_bytes_are_errors() {
        assert!(matches!(
            FeatureExtAck::decode(&[0x0A, 1, 0, 0, 0, 1]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(FeatureExtAck::decode(&[0x0A, 9, 0, 0, 0, 1, 0xFF]).is_err());
        assert!(FeatureExtAck::decode(&[0xFF, 0x00]).is_err());
    }
}
