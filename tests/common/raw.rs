//! A bare-bones TDS client for tests that real drivers cannot express:
//! cancelling mid-result, vanishing mid-result, sending malformed bytes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use sluice::tds::login7::Login7;
use sluice::tds::packet::{encode_message, PacketHeader, PacketType, Status};
use sluice::tds::prelogin::{encryption, PreLogin};
use sluice::tds::read::put_utf16;
use sluice::tds::token::walker::{TokenEvent, TokenWalker};
use sluice::transport::{Packet, PacketReader};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub struct RawClient {
    pub reader: PacketReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).ok();
        let (read, writer) = tcp.into_split();
        RawClient {
            reader: PacketReader::new(read),
            writer,
        }
    }

    /// PRELOGIN without encryption, then LOGIN7; panics unless LOGINACK comes back.
    pub async fn login(addr: SocketAddr, user: &str, password: &str) -> RawClient {
        RawClient::login_with(addr, Login7::new_client(user, password, "")).await
    }

    /// Like [`login`](Self::login), with the client's own LOGIN7.
    pub async fn login_with(addr: SocketAddr, mut login: Login7) -> RawClient {
        let mut client = RawClient::connect(addr).await;
        let prelogin = PreLogin {
            encryption: Some(encryption::NOT_SUP),
            ..PreLogin::default()
        };
        let mut payload = Vec::new();
        prelogin.encode(&mut payload);
        client.send(PacketType::PRELOGIN, &payload).await;
        client.read_message().await;
        login.packet_size = 4096;
        let mut payload = Vec::new();
        login.encode(&mut payload);
        client.send(PacketType::LOGIN7, &payload).await;
        let events = client.read_response().await;
        assert!(
            events.iter().any(|e| matches!(e, TokenEvent::LoginAck(_))),
            "no LOGINACK: {events:?}"
        );
        client
    }

    pub async fn send(&mut self, ty: PacketType, payload: &[u8]) {
        let mut out = Vec::new();
        encode_message(&mut out, ty, Status::NORMAL, 0, payload, 4096);
        self.writer.write_all(&out).await.expect("send");
    }

    /// A SQL batch whose first packet carries `status` (reset bits).
    pub async fn send_batch_with_status(&mut self, sql: &str, status: Status) {
        let mut payload = all_headers(0);
        put_utf16(&mut payload, sql);
        let mut out = Vec::new();
        encode_message(&mut out, PacketType::SQL_BATCH, status, 0, &payload, 4096);
        self.writer.write_all(&out).await.expect("send");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// A SQL batch with the ALL_HEADERS a TDS 7.2+ client sends.
    pub async fn send_batch(&mut self, sql: &str) {
        let mut payload = all_headers(0);
        put_utf16(&mut payload, sql);
        self.send(PacketType::SQL_BATCH, &payload).await;
    }

    /// A Transaction Manager request [MS-TDS 2.2.6.9]: `request_type`
    /// followed by its payload bytes.
    pub async fn send_tm(&mut self, descriptor: u64, request_type: u16, body: &[u8]) {
        let mut payload = all_headers(descriptor);
        payload.extend_from_slice(&request_type.to_le_bytes());
        payload.extend_from_slice(body);
        self.send(PacketType::TRANSACTION_MANAGER, &payload).await;
    }

    pub async fn send_attention(&mut self) {
        let header = PacketHeader::new(PacketType::ATTENTION, Status::EOM, 0);
        self.writer
            .write_all(&header.encode())
            .await
            .expect("attention");
    }

    pub async fn read_packet(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(10), self.reader.read_packet())
            .await
            .expect("packet within 10 s")
            .expect("packet")
    }

    pub async fn read_message(&mut self) -> Vec<u8> {
        let mut payload = Vec::new();
        loop {
            let p = self.read_packet().await;
            payload.extend_from_slice(p.payload());
            if p.is_eom() {
                return payload;
            }
        }
    }

    /// Reads one response message and returns its token events.
    pub async fn read_response(&mut self) -> Vec<TokenEvent> {
        let payload = self.read_message().await;
        let mut events = Vec::new();
        TokenWalker::new()
            .feed(&payload, &mut events)
            .expect("well-formed response");
        events
    }

    /// True once the peer has closed the connection (within `limit`).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let result = tokio::time::timeout(limit, async {
            loop {
                if self.reader.read_packet().await.is_err() {
                    return;
                }
            }
        })
        .await;
        result.is_ok()
    }
}

/// ALL_HEADERS with only the transaction descriptor header.
fn all_headers(descriptor: u64) -> Vec<u8> {
    let mut payload = Vec::new();
    sluice::tds::request::encode_all_headers(&mut payload, descriptor, 1);
    payload
}

/// A response as a raw client sees it.
#[derive(Debug)]
pub struct Reply {
    pub events: Vec<TokenEvent>,
    /// The values of the fake's INT rows: which server answered.
    pub answers: Vec<i32>,
}

impl Reply {
    pub async fn read(client: &mut RawClient) -> Reply {
        let payload = client.read_message().await;
        let mut events = Vec::new();
        TokenWalker::new()
            .feed(&payload, &mut events)
            .expect("a well-formed response");
        Reply {
            events,
            answers: super::fake::answers(&payload),
        }
    }

    /// The @handle a prepare returned (RETURNVALUE ordinal 0).
    pub fn handle(&self) -> Option<i32> {
        self.events.iter().find_map(|e| match e {
            TokenEvent::ReturnValue {
                ordinal: 0,
                value: Some(v),
                ..
            } => i32::try_from(*v).ok(),
            _ => None,
        })
    }

    pub fn errors(&self) -> Vec<(u32, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TokenEvent::Error(m) => Some((m.number, m.message.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn assert_no_error(&self, what: &str) {
        assert!(self.errors().is_empty(), "{what}: {:?}", self.errors());
    }
}

/// Sends an RPC request and reads its response.
pub async fn call(client: &mut RawClient, payload: &[u8]) -> Reply {
    client.send(PacketType::RPC, payload).await;
    Reply::read(client).await
}

/// Sends a SQL batch and reads its response.
pub async fn batch(client: &mut RawClient, sql: &str) -> Reply {
    client.send_batch(sql).await;
    Reply::read(client).await
}
