//! A minimal TDS server for faults iridium cannot stage: it logs anyone in,
//! answers batches with one INT row, and "dies" in the middle of a result
//! when the batch text contains a marker.
#![allow(dead_code)]

use std::net::SocketAddr;

use sluice::tds::packet::{encode_message, PacketType, Status};
use sluice::tds::prelogin::{encryption, PreLogin};
use sluice::tds::read::put_b_varchar;
use sluice::tds::token::done::{Done, DoneKind, DoneStatus};
use sluice::tds::token::login_ack::LoginAck;
use sluice::transport::PacketReader;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// In a batch: send the column metadata and two whole rows, then close.
pub const DIE_BETWEEN_ROWS: &str = "die-between-rows";
/// In a batch: send the column metadata and half a row, then close.
pub const DIE_MID_ROW: &str = "die-mid-row";

pub async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake backend");
    let addr = listener.local_addr().expect("fake backend address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp));
        }
    });
    addr
}

async fn serve(tcp: TcpStream) {
    let (read, mut write) = tcp.into_split();
    let mut reader = PacketReader::new(read);
    loop {
        let Ok((header, payload)) = reader
            .read_message(
                &[
                    PacketType::PRELOGIN,
                    PacketType::LOGIN7,
                    PacketType::SQL_BATCH,
                ],
                1 << 20,
            )
            .await
        else {
            return;
        };
        let text = String::from_utf16_lossy(
            &payload
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        );
        let reply = match header.ty {
            PacketType::PRELOGIN => prelogin_reply(),
            PacketType::LOGIN7 => login_reply(),
            _ if text.contains(DIE_BETWEEN_ROWS) => {
                let partial = [column_metadata(), row(1), row(2)].concat();
                let _ = write.write_all(&unfinished_packet(&partial)).await;
                return;
            }
            _ if text.contains(DIE_MID_ROW) => {
                let mut partial = column_metadata();
                partial.extend_from_slice(&row(1)[..3]);
                let _ = write.write_all(&unfinished_packet(&partial)).await;
                return;
            }
            _ => [column_metadata(), row(42), done()].concat(),
        };
        let mut out = Vec::new();
        encode_message(
            &mut out,
            PacketType::TABULAR_RESULT,
            Status::NORMAL,
            0,
            &reply,
            4096,
        );
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// One packet without EOM: the message it starts is never finished.
fn unfinished_packet(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(
        &mut out,
        PacketType::TABULAR_RESULT,
        Status::NORMAL,
        0,
        payload,
        4096,
    );
    out[1] = 0; // clear EOM
    out
}

fn prelogin_reply() -> Vec<u8> {
    let mut out = Vec::new();
    PreLogin {
        encryption: Some(encryption::NOT_SUP),
        ..PreLogin::default()
    }
    .encode(&mut out);
    out
}

fn login_reply() -> Vec<u8> {
    let mut out = Vec::new();
    LoginAck {
        interface: 1,
        tds_version: 0x7400_0004,
        prog_name: "fake".into(),
        version: [16, 0, 0, 0],
    }
    .encode(&mut out);
    out.extend_from_slice(&done());
    out
}

/// COLMETADATA with one nullable INT column `n` [MS-TDS 2.2.7.4].
fn column_metadata() -> Vec<u8> {
    let mut out = vec![0x81, 1, 0];
    out.extend_from_slice(&0u32.to_le_bytes()); // user type
    out.extend_from_slice(&0x0001u16.to_le_bytes()); // flags: nullable
    out.extend_from_slice(&[0x26, 4]); // INTN(4)
    put_b_varchar(&mut out, "n");
    out
}

fn row(value: i32) -> Vec<u8> {
    let mut out = vec![0xD1, 4];
    out.extend_from_slice(&value.to_le_bytes());
    out
}

fn done() -> Vec<u8> {
    let mut out = Vec::new();
    Done {
        kind: DoneKind::Done,
        status: DoneStatus::COUNT,
        cur_cmd: 0xC1,
        row_count: 1,
    }
    .encode(&mut out);
    out
}
