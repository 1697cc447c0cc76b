//! Transaction Manager requests for backends configured with
//! `transaction_requests = "emulate"` (see `frontend::transaction_emulation`).

use super::relay::{reply_has_error, request_headers_len, run_batch};
use super::{ClientError, Session, SessionError};
use crate::frontend::transaction_emulation;
use crate::router::Target;
use crate::tds::request::TransactionManagerRequest;
use crate::transport::Packet;

impl Session {
    /// Runs a Transaction Manager request as T-SQL and answers as SQL
    /// Server would (see `transaction_emulation`).
    pub(super) async fn emulate_transaction_request(
        &mut self,
        packets: Vec<Packet>,
        complete: bool,
    ) -> Result<(), SessionError> {
        let payload = super::request::message_payload(&packets);
        let decoded = TransactionManagerRequest::decode(&payload)
            .map_err(|e| {
                ClientError::request(format!("malformed Transaction Manager request: {e}"))
            })
            .and_then(|r| {
                let sql =
                    transaction_emulation::to_sql(&r.request).map_err(ClientError::request)?;
                Ok((r, sql))
            });
        let (request, sql) = match decoded {
            Ok(ok) if complete => ok,
            Ok(_) => {
                return self
                    .fail_request(
                        false,
                        ClientError::request("oversized Transaction Manager request"),
                    )
                    .await
            }
            Err(error) => return self.fail_request(complete, error).await,
        };
        let mut held = match self.take_synced(Target::Primary).await {
            Ok(held) => held,
            Err(e) => {
                return self
                    .fail_request(true, ClientError::backend_unavailable(&e))
                    .await
            }
        };
        let reply = match run_batch(
            &mut held.conn,
            &payload[..request_headers_len(&payload)],
            &sql,
        )
        .await
        {
            Ok(reply) => reply,
            Err(e) => {
                held.conn.mark_broken();
                return self
                    .fail_request(true, ClientError::backend_failed(e))
                    .await;
            }
        };
        self.put_back(Target::Primary, held);
        let answer = if reply_has_error(&reply) {
            reply
        } else {
            self.emulated.reply(&request.request)
        };
        self.send_to_client(&answer)
            .await
            .map_err(SessionError::ClientGone)
    }
}
