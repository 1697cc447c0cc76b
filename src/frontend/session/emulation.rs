//! Transaction Manager requests for backends configured with
//! `transaction_requests = "emulate"` (see `frontend::transaction_emulation`).

use super::{reply_has_error, ClientError, Session, SessionError};
use crate::frontend::transaction_emulation;
use crate::router::Target;
use crate::tds::packet::Status;
use crate::tds::request::{all_headers_bytes, TransactionManagerRequest};
use crate::transport::Request;

impl Session {
    /// Runs a Transaction Manager request as T-SQL and answers as SQL
    /// Server would (see `transaction_emulation`).
    pub(super) async fn emulate_transaction_request(
        &mut self,
        request: Request,
    ) -> Result<(), SessionError> {
        let complete = request.is_complete();
        let payload = request.payload();
        let decoded = TransactionManagerRequest::decode(&payload)
            .map_err(|e| {
                ClientError::request(format!("malformed Transaction Manager request: {e}"))
            })
            .and_then(|r| {
                let sql =
                    transaction_emulation::to_sql(&r.request).map_err(ClientError::request)?;
                Ok((r, sql))
            });
        let (tm, sql) = match decoded {
            Ok(ok) if complete => ok,
            Ok(_) => {
                let error = ClientError::request("oversized Transaction Manager request");
                return self.fail_request(false, error).await;
            }
            Err(error) => return self.fail_request(complete, error).await,
        };
        let headers = all_headers_bytes(&payload).unwrap_or_default().to_vec();
        drop(payload);
        let mut held = match self.take_synced(Target::Primary, Status::NORMAL).await {
            Ok(held) => held,
            Err(e) => {
                if self.routing.has_unmovable_state() || self.emulated.is_open() {
                    return Err(SessionError::StateLost(e.to_string()));
                }
                let error = ClientError::backend_unavailable(&e);
                return self.fail_request(true, error).await;
            }
        };
        let reply = match held.conn.run_batch_with_headers(&headers, &sql).await {
            Ok(reply) => reply,
            Err(e) => {
                held.conn.mark_broken();
                if self.routing.has_unmovable_state() || self.emulated.is_open() {
                    return Err(SessionError::StateLost(e.to_string()));
                }
                let error = ClientError::backend_failed(e);
                return self.fail_request(true, error).await;
            }
        };
        let answer = if reply_has_error(&reply) {
            reply
        } else {
            self.emulated.reply(&tm.request)
        };
        // After the reply: it records whether the transaction is open.
        self.keep_or_release(Target::Primary, held);
        self.client
            .send_message(&answer)
            .await
            .map_err(SessionError::ClientGone)
    }
}
