//! Every decoder and the walker return errors, never panic, on any bytes:
//! pseudo-random input and random mutations of valid responses.

use super::col_metadata::read_col_metadata;
use super::return_value::read_return_value_header;
use super::test_responses::{every_framing_response, spec_login_packet, spec_select_packet};
use super::type_info::{read_full_type_info, read_type_info_at, TypeInfoSite};
use super::*;
use crate::tds::read::Reader;
use crate::testing::XorShift;

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        spec_login_packet()[8..].to_vec(),
        spec_select_packet()[8..].to_vec(),
        every_framing_response().bytes,
    ];
    let mut tokens = Vec::new();
    EnvChange::Routing {
        port: 1,
        server: "r".into(),
    }
    .encode(&mut tokens);
    FeatureExtAck {
        features: vec![(1, vec![2, 3])],
    }
    .encode(&mut tokens);
    seeds.push(tokens);
    seeds
}

fn mutate(rng: &mut XorShift, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 if !bytes.is_empty() => bytes[at] = rng.next() as u8,
            1 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
            2 => bytes.truncate(at),
            3 => {
                let extra = rng.bytes(8);
                bytes.splice(at..at, extra);
            }
            _ => {
                let end = (at + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

/// Feeds `bytes` in random chunks, sometimes resetting, ignoring errors.
fn walk(rng: &mut XorShift, bytes: &[u8]) {
    let mut walker = TokenWalker::with_max_buffered(1 << 12);
    let mut events = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(64));
        let (chunk, tail) = rest.split_at(n);
        if walker.feed(chunk, &mut events).is_err() && rng.below(2) == 0 {
            walker.reset();
        }
        let _ = walker.at_token_boundary();
        rest = tail;
    }
}

/// Runs every decoder on `bytes` and on a random suffix of it.
fn decode_everything(rng: &mut XorShift, bytes: &[u8]) {
    let suffix = &bytes[rng.below(bytes.len() + 1)..];
    for b in [bytes, suffix] {
        let _ = Done::decode(DoneKind::DoneProc, b);
        let _ = EnvChange::decode(b);
        let _ = EnvChange::decode_all(b);
        let _ = EnvChange::body_len(rng.next() as u16, b);
        let _ = ServerMessage::decode(b);
        let _ = LoginAck::decode(b);
        let _ = FeatureExtAck::decode(b);
        let _ = read_type_info_at(&mut Reader::new(b, "fuzz"), TypeInfoSite::RpcParameter);
        let _ = read_full_type_info(&mut Reader::new(b, "fuzz"));
        let _ = read_col_metadata(&mut Reader::new(b, "fuzz"));
        let _ = read_return_value_header(&mut Reader::new(b, "fuzz"));
        let _ = BatchReply::decode(b);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15);
    const TOKEN_TYPES: [u8; 8] = [0x81, 0xD1, 0xD2, 0xAC, 0xE3, 0xAA, 0xAD, 0xAE];
    for _ in 0..10_000 {
        let mut bytes = rng.bytes(200);
        if let Some(first) = bytes.first_mut() {
            *first = TOKEN_TYPES[rng.below(TOKEN_TYPES.len())];
        }
        walk(&mut rng, &bytes);
        decode_everything(&mut rng, &bytes);
    }
}

#[test]
fn mutated_responses_never_panic() {
    let mut rng = XorShift::new(0xD1B5_4A32_D192_ED03);
    let seeds = seeds();
    for _ in 0..12_000 {
        let seed = seeds[rng.below(seeds.len())].clone();
        let bytes = mutate(&mut rng, seed);
        walk(&mut rng, &bytes);
        let token_start = rng.below(bytes.len());
        decode_everything(&mut rng, &bytes[token_start..]);
    }
}
