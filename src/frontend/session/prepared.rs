//! Prepared statements across connections: a handle is valid only on the
//! connection that prepared it. Statements prepared on a replica are
//! remembered by handle, so that sp_execute / sp_unprepare follow them, or
//! run on the primary as sp_executesql when the session must stay there.

use std::sync::atomic::Ordering;

use super::request::RequestHead;
use super::{ClientError, Session, SessionError};
use crate::router::{Decision, Target};
use crate::tds::packet::{PacketType, Status};
use crate::tds::request::execute_as_executesql;
use crate::transport::Packet;

/// Replica-prepared statements a session may hold; more are prepared on
/// the primary (where no tracking is needed).
const MAX_REPLICA_HANDLES: usize = 4096;

/// A statement prepared on a replica connection: its handle is only valid
/// there, and the text lets it run elsewhere as sp_executesql.
#[derive(Debug, Clone)]
pub(super) struct ReplicaStatement {
    replica: usize,
    sql: String,
    params: String,
}

impl Session {
    /// A prepare goes to a replica only if Sluice can read the handles that
    /// replica returns; otherwise to the primary, where handles need no
    /// tracking.
    pub(super) fn keep_handles_followable(&self, head: &RequestHead, decision: &mut Decision) {
        let (RequestHead::Prepare { .. }, Target::Replica(i)) = (head, decision.target) else {
            return;
        };
        let follows = self
            .replica_pools(i)
            .is_ok_and(|p| p.follows_handles.load(Ordering::Relaxed));
        if !follows {
            decision.target = Target::Primary;
            decision.reason = crate::router::Reason::HandleNotFollowable;
        }
    }

    /// The replica statement an sp_execute / sp_unprepare refers to.
    pub(super) fn replica_statement(&self, head: &RequestHead) -> Option<ReplicaStatement> {
        match head {
            RequestHead::Execute(Some(h)) | RequestHead::Unprepare(Some(h)) => {
                self.prepared.get(h).cloned()
            }
            _ => None,
        }
    }

    /// A statement prepared on the replica runs there, unless the session
    /// must stay on the primary (a transaction began since): then it runs on
    /// the primary as sp_executesql, so the transaction does not split.
    pub(super) async fn run_replica_statement(
        &mut self,
        head: &RequestHead,
        statement: ReplicaStatement,
        packets: Vec<Packet>,
        complete: bool,
    ) -> Result<(), SessionError> {
        let on_replica = Decision {
            target: Target::Replica(statement.replica),
            reason: crate::router::Reason::PreparedOnReplica,
            classification: None,
        };
        if let RequestHead::Unprepare(Some(handle)) = head {
            self.prepared.remove(handle);
            return self.execute(on_replica, packets, complete).await.map(drop);
        }
        if !complete || !self.view().holds_primary() {
            return self.execute(on_replica, packets, complete).await.map(drop);
        }
        let payload = super::request::message_payload(&packets);
        let rewritten = match execute_as_executesql(&payload, &statement.sql, &statement.params) {
            Ok(rewritten) => rewritten,
            Err(e) => {
                return self
                    .fail_request(
                        true,
                        ClientError::request(format!(
                            "cannot re-run a prepared statement on the primary: {e}"
                        )),
                    )
                    .await
            }
        };
        let packets = packets_of(PacketType::RPC, packets[0].header.status, &rewritten);
        let on_primary = Decision {
            target: Target::Primary,
            reason: crate::router::Reason::ExecutesqlInTransaction,
            classification: None,
        };
        self.execute(on_primary, packets, true).await.map(drop)
    }

    pub(super) fn remember_handle(&mut self, replica: usize, sql: &str, params: &str) {
        let Some(&handle) = self.return_values.first() else {
            // Its sp_execute will go to the primary and fail there; later
            // prepares for this replica stay on the primary.
            if let Ok(pools) = self.replica_pools(replica) {
                if pools.follows_handles.swap(false, Ordering::Relaxed) {
                    tracing::error!(backend = %pools.target().name, "no readable handle in a reply to sp_prepare; prepared statements now stay on the primary");
                }
            }
            return;
        };
        if let (Ok(handle), true) = (
            i32::try_from(handle),
            self.prepared.len() < MAX_REPLICA_HANDLES,
        ) {
            let statement = ReplicaStatement {
                replica,
                sql: sql.to_string(),
                params: params.to_string(),
            };
            self.prepared.insert(handle, statement);
        }
    }

    /// Handles die with their connection.
    pub(super) fn forget_handles(&mut self, replica: usize) {
        self.prepared.retain(|_, s| s.replica != replica);
    }
}

/// A message of `ty` cut into packets, as a client would send it.
fn packets_of(ty: PacketType, first_status: Status, payload: &[u8]) -> Vec<Packet> {
    let mut bytes = Vec::new();
    let first_status = first_status.without(Status::EOM);
    crate::tds::packet::encode_message(
        &mut bytes,
        ty,
        first_status,
        0,
        payload,
        crate::tds::packet::DEFAULT_PACKET_SIZE,
    );
    let mut bytes = bytes::BytesMut::from(&bytes[..]);
    let mut packets = Vec::new();
    while bytes.len() >= crate::tds::packet::HEADER_LEN {
        let Ok(header) = crate::tds::PacketHeader::decode(
            &bytes[..crate::tds::packet::HEADER_LEN],
            crate::tds::packet::MAX_PACKET_SIZE,
        ) else {
            break;
        };
        packets.push(Packet {
            header,
            bytes: bytes.split_to(header.length as usize),
        });
    }
    packets
}
