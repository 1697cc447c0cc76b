//! The session's side of operating Sluice live: waiting for the next
//! request while the proxy may be draining, cutting off a request still
//! running when the drain's time is up, and what the admin API shows of
//! the session (updated at request boundaries only).

use std::time::Instant;

use super::{Session, SessionError};
use crate::frontend::reply::ClientError;
use crate::frontend::Registration;
use crate::shutdown::Phase;
use crate::transport::{Packet, ReadError};

impl Session {
    /// Shows this session in the admin API's `/clients`.
    pub fn with_registration(mut self, registration: Registration) -> Self {
        self.registration = Some(registration);
        self
    }

    /// The first packet of the client's next request. While the proxy
    /// drains, a session with no open transaction ends here at once; one
    /// inside a transaction waits for it to end, until the drain's time is
    /// up: then the client gets a severity-20 error. Either way the client's
    /// side is shut down and the read ends as `Closed`.
    pub(super) async fn next_request(&mut self) -> Result<Packet, ReadError> {
        let holds_work = self.routing.in_transaction() || self.emulated.is_open();
        let ends = if holds_work {
            &mut self.closing
        } else {
            &mut self.draining
        };
        tokio::select! {
            biased;
            read = self.client.next_request() => read,
            phase = ends.reached() => {
                if phase == Phase::Closing && holds_work {
                    let error = ClientError::shutting_down(self.ctx.shutdown_timeout);
                    self.send_error(&error).await.ok();
                }
                tracing::debug!(spid = self.client.spid(), ?phase, "session closed by the drain");
                self.client.shutdown().await;
                Err(ReadError::Closed)
            }
        }
    }

    /// The drain's time ran out while a request was running (its backend
    /// connection, if it had one, is already discarded). The client gets
    /// the shutting-down error when what it received of the response ends
    /// between two tokens (or it received nothing); otherwise no message
    /// can be finished cleanly. Either way its connection is closed.
    pub(super) async fn cut_off(&mut self, at_token_boundary: bool) -> SessionError {
        let error = ClientError::shutting_down(self.ctx.shutdown_timeout);
        if at_token_boundary {
            self.send_error(&error).await.ok();
        }
        tracing::debug!(
            spid = self.client.spid(),
            at_token_boundary,
            "request cut off by the drain"
        );
        self.client.shutdown().await;
        SessionError::ShuttingDown(error.message)
    }

    /// A request started: the client is not idle.
    pub(super) fn report_busy(&self) {
        if let Some(registration) = &self.registration {
            registration.update(|state| state.busy = true);
        }
    }

    /// A request ended: what the session holds now.
    pub(super) fn report_idle(&self) {
        let Some(registration) = &self.registration else {
            return;
        };
        let in_transaction = self.routing.in_transaction() || self.emulated.is_open();
        let pin = self.routing.pin().map(|reason| reason.label());
        let held = u8::from(self.primary.is_some()) + u8::from(self.replica.is_some());
        registration.update(|state| {
            state.busy = false;
            state.last_request_end = Instant::now();
            state.in_transaction = in_transaction;
            state.pin = pin;
            state.connections_held = held;
            if state.database != self.database {
                state.database.clone_from(&self.database);
            }
        });
    }
}
