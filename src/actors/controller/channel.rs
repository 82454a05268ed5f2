//! Kafka's `ControllerChannelManager`: one ordered queue per live broker for the controller's
//! requests. A broker must see LeaderAndIsr and UpdateMetadata in the order the controller
//! decided them, and a request lost to a network fault is resent until it gets through or the
//! broker leaves the cluster (its queue is then dropped with whatever it still held).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::transport::peer::{PeerRequest, PeerResponse, Peers, TransportError};

/// One queued request and who wants its answer.
struct Pending {
    request: PeerRequest,
    reply: oneshot::Sender<Result<PeerResponse, TransportError>>,
}

/// The queues, one per broker the controller talks to.
pub struct ControllerChannelManager {
    peers: Peers,
    queues: HashMap<i32, mpsc::UnboundedSender<Pending>>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl ControllerChannelManager {
    pub fn new(peers: Peers) -> Self {
        Self {
            peers,
            queues: HashMap::new(),
        }
    }

    /// Starts the queue of a broker that joined (idempotent).
    pub fn add_broker(&mut self, id: i32) {
        if self.queues.contains_key(&id) {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let peers = self.peers.clone();
        tokio::spawn(async move {
            while let Some(pending) = rx.recv().await {
                let mut backoff = FIRST_BACKOFF;
                let outcome = loop {
                    match peers.call(id, pending.request.clone()).await {
                        Ok(response) => break Ok(response),
                        Err(e) => {
                            if pending.reply.is_closed() && rx.is_closed() {
                                break Err(e);
                            }
                            tracing::debug!(to = id, kind = pending.request.kind(), error = %e, "controller request failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            // A removed broker's queue is closed: stop retrying.
                            if rx.is_closed() {
                                break Err(e);
                            }
                        }
                    }
                };
                let _ = pending.reply.send(outcome);
            }
        });
        self.queues.insert(id, tx);
    }

    /// Drops a broker's queue (it died): pending requests are abandoned.
    pub fn remove_broker(&mut self, id: i32) {
        self.queues.remove(&id);
    }

    pub fn brokers(&self) -> Vec<i32> {
        self.queues.keys().copied().collect()
    }

    /// Queues `request` for `to`; the receiver yields its answer once delivered.
    pub fn send(
        &self,
        to: i32,
        request: PeerRequest,
    ) -> oneshot::Receiver<Result<PeerResponse, TransportError>> {
        let (reply, rx) = oneshot::channel();
        match self.queues.get(&to) {
            Some(queue) => {
                if let Err(mpsc::error::SendError(p)) = queue.send(Pending { request, reply }) {
                    let _ = p.reply.send(Err(TransportError::Closed(to)));
                }
            }
            None => {
                let _ = reply.send(Err(TransportError::UnknownBroker(to)));
            }
        }
        rx
    }
}
