//! Packet reader and resizer [MS-TDS 2.2.3]: `PacketReader` reassembles
//! packets from whatever the socket delivers, and `write_packet_resized`
//! re-cuts a packet for a peer that negotiated a smaller packet size.
//!
//! Properties:
//! - the reader never panics; each packet it returns is exactly the bytes
//!   that came off the wire (its header included), in order, and it stops
//!   with `Closed` only at a packet boundary, `Truncated` inside a packet;
//! - a resized packet carries the same payload in packets no longer than the
//!   target size, of the same type, SPID, packet ID and window; EOM only on
//!   the last piece and only if the original had it; the reset bits only on
//!   the first piece; a packet that fits is forwarded unchanged.
//!
//! Input layout: `[size u16 LE][step u8][stream...]`. `size` picks the target
//! packet size in 512..=32767 (the range LOGIN7 may negotiate); `step` is how
//! many bytes each read of the in-memory socket returns (1..=256, or all at
//! once for 0), so that headers and payloads arrive split.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use sluice::tds::packet::{PacketHeader, Status, HEADER_LEN, MAX_PACKET_SIZE, MIN_PACKET_SIZE};
use sluice::transport::{write_packet_resized, Packet, PacketReader, ReadError};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Runtime;

/// One runtime for the whole run: building one per input would dominate
/// the time spent in the code under test.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&[s0, s1, step], stream)) = data.split_first_chunk::<3>() else {
        return;
    };
    let span = MAX_PACKET_SIZE - MIN_PACKET_SIZE + 1;
    let packet_size = MIN_PACKET_SIZE + u16::from_le_bytes([s0, s1]) as usize % span;
    let step = if step == 0 { usize::MAX } else { step as usize };
    runtime().block_on(check(stream, step, packet_size));
});

async fn check(stream: &[u8], step: usize, packet_size: usize) {
    let mut reader = PacketReader::new(Trickle { data: stream, step });
    let mut consumed = 0;
    let end = loop {
        match reader.read_packet().await {
            Ok(packet) => {
                let wire = &stream[consumed..consumed + packet.len()];
                assert_eq!(packet.as_bytes(), wire, "packet differs from the wire");
                assert_eq!(packet.header().length as usize, packet.len());
                assert_eq!(packet.header().encode(), packet.as_bytes()[..HEADER_LEN]);
                consumed += packet.len();
                resize(&packet, packet_size).await;
            }
            Err(e) => break e,
        }
    };
    let left = &stream[consumed..];
    match end {
        ReadError::Closed => assert!(left.is_empty(), "closed with {} bytes left", left.len()),
        ReadError::Truncated => {
            assert!(!left.is_empty());
            // A header that decodes and announces more than is left.
            if let Ok(header) = PacketHeader::decode(left, MAX_PACKET_SIZE) {
                assert!((header.length as usize) > left.len());
            }
        }
        ReadError::Malformed(_) => {
            assert!(PacketHeader::decode(left, MAX_PACKET_SIZE).is_err());
        }
        ReadError::Io(e) => panic!("in-memory reads cannot fail: {e}"),
    }
}

async fn resize(packet: &Packet, packet_size: usize) {
    let mut out: Vec<u8> = Vec::new();
    write_packet_resized(&mut out, packet, packet_size)
        .await
        .expect("writing to a Vec cannot fail");

    if packet.len() <= packet_size {
        assert_eq!(
            out,
            packet.as_bytes(),
            "a packet that fits is forwarded as is"
        );
        return;
    }

    let original = *packet.header();
    let mut pieces = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let header = PacketHeader::decode(rest, packet_size).expect("a resized header decodes");
        let len = header.length as usize;
        assert!(len <= rest.len(), "piece runs past the output");
        pieces.push((header, &rest[HEADER_LEN..len]));
        rest = &rest[len..];
    }

    let payload: Vec<u8> = pieces.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    assert_eq!(payload, packet.payload(), "payload changed by resizing");
    let chunk = packet_size - HEADER_LEN;
    assert_eq!(pieces.len(), packet.payload().len().div_ceil(chunk));

    let last = pieces.len() - 1;
    for (i, (header, piece)) in pieces.iter().enumerate() {
        assert!(!piece.is_empty(), "empty piece {i}");
        assert_eq!(header.ty, original.ty);
        assert_eq!(header.spid, original.spid);
        assert_eq!(header.packet_id, original.packet_id);
        assert_eq!(header.window, original.window);
        let eom = header.status.is_eom();
        assert_eq!(
            eom,
            i == last && original.status.is_eom(),
            "EOM on piece {i}/{last}"
        );
        let status = header.status.without(Status::EOM);
        if i == 0 {
            // Reset bits (and any other flag) belong to the message's first packet.
            assert_eq!(status, original.status.without(Status::EOM));
        } else {
            // Later pieces carry no reset bit; IGNORE must mark every piece of
            // an ignored message.
            assert_eq!(status.0, original.status.0 & Status::IGNORE.0);
        }
    }
}

/// A socket that delivers `data` `step` bytes per read, then end of stream.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(self.step).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}
