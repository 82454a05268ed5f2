//! The broker-wide bound on requests read from clients and not yet handled: Kafka's request
//! channel, shared by every client connection of a broker.
//!
//! - `queued.max.requests` (default 500): Kafka's `RequestChannel` capacity. A request holds
//!   a place from the moment its size prefix is read until its handler is done with it.
//! - `queued.max.request.bytes` (default -1, unbounded): Kafka's request `MemoryPool`. A
//!   request holds its size in bytes over the same span; its body is read from the socket
//!   only once the bytes are granted. As in Kafka's (non-strict) pool, a request larger than
//!   the whole pool is let in when the pool is empty, so it cannot wait forever.
//!
//! When either is exhausted the connection waiting for a place stops reading its socket (Kafka
//! mutes the channel): the client's TCP window closes, nothing is dropped, and the request
//! goes on as soon as others finish. A request parked in a purgatory (a long-poll fetch, an
//! `acks=all` produce waiting for the ISR, a group join waiting for the rebalance) gives its
//! place back, as Kafka's handler thread returns once it parked the request: see [`parked`].
//!
//! The per-connection bounds of [`super::connection`] (at most `queued.max.requests` pipelined
//! requests and `socket.request.max.bytes` of request bytes per connection) stand beside this
//! one: Kafka reads one request at a time per connection, weir lets a client pipeline.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The broker's queue bounds and what is held against them now.
#[derive(Debug)]
pub struct RequestQueue {
    requests: Arc<Semaphore>,
    /// `None`: `queued.max.request.bytes` is unbounded.
    bytes: Option<(Arc<Semaphore>, u32)>,
    max_requests: usize,
    queued_requests: AtomicU64,
    queued_bytes: AtomicU64,
    /// The most bytes ever held at once (weir's own gauge: what the bound was tested against).
    peak_bytes: AtomicU64,
    /// Requests ever let in.
    admitted: AtomicU64,
}

/// One request's place in the queue; dropping it gives the place back.
#[derive(Debug)]
pub struct QueuedRequest {
    queue: Arc<RequestQueue>,
    len: u64,
    _request: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl Drop for QueuedRequest {
    fn drop(&mut self) {
        self.queue.queued_requests.fetch_sub(1, Ordering::Relaxed);
        self.queue
            .queued_bytes
            .fetch_sub(self.len, Ordering::Relaxed);
    }
}

impl RequestQueue {
    /// `max_requests` places (at least one) and `max_bytes` bytes (`None`: unbounded).
    pub fn new(max_requests: usize, max_bytes: Option<usize>) -> Arc<Self> {
        let max_requests = max_requests.clamp(1, Semaphore::MAX_PERMITS);
        let bytes = max_bytes.map(|b| {
            let b = b.clamp(1, u32::MAX as usize) as u32;
            (Arc::new(Semaphore::new(b as usize)), b)
        });
        Arc::new(Self {
            requests: Arc::new(Semaphore::new(max_requests)),
            bytes,
            max_requests,
            queued_requests: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            peak_bytes: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
        })
    }

    /// From `queued.max.requests` and `queued.max.request.bytes` (≤ 0: unbounded).
    pub fn from_config(config: &crate::config::BrokerConfig) -> Arc<Self> {
        let bytes = (config.queued_max_request_bytes > 0)
            .then(|| usize::try_from(config.queued_max_request_bytes).unwrap_or(usize::MAX));
        Self::new(config.queued_max_requests.max(1) as usize, bytes)
    }

    /// Waits for a place for a request of `len` bytes (cancel-safe: dropping the future
    /// waits no more and holds nothing).
    pub async fn admit(self: &Arc<Self>, len: usize) -> QueuedRequest {
        // Bytes first: a request waiting for memory does not hold one of the places.
        let bytes = match &self.bytes {
            Some((pool, max)) => {
                let weight = (len.clamp(1, *max as usize)) as u32;
                pool.clone().acquire_many_owned(weight).await.ok()
            }
            None => None,
        };
        let request = self
            .requests
            .clone()
            .acquire_owned()
            .await
            .expect("the request semaphore is never closed");
        self.queued_requests.fetch_add(1, Ordering::Relaxed);
        self.admitted.fetch_add(1, Ordering::Relaxed);
        let len = len as u64;
        let now = self.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
        self.peak_bytes.fetch_max(now, Ordering::Relaxed);
        QueuedRequest {
            queue: self.clone(),
            len,
            _request: request,
            _bytes: bytes,
        }
    }

    /// Requests holding a place now (Kafka's `RequestQueueSize`).
    pub fn queued_requests(&self) -> u64 {
        self.queued_requests.load(Ordering::Relaxed)
    }

    /// Request bytes held now (Kafka's `MemoryPoolUsed`).
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// The most request bytes held at once since the broker started.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes.load(Ordering::Relaxed)
    }

    /// Requests let in since the broker started.
    pub fn admitted_total(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// `queued.max.requests`.
    pub fn max_requests(&self) -> usize {
        self.max_requests
    }

    /// `queued.max.request.bytes`, if bounded.
    pub fn max_bytes(&self) -> Option<u64> {
        self.bytes.as_ref().map(|(_, max)| *max as u64)
    }
}

tokio::task_local! {
    /// The place of the request whose handler runs in this task.
    static PLACE: RefCell<Option<QueuedRequest>>;
}

/// Runs a request's handler holding `place`; the place is given back when the handler ends
/// or when it calls [`parked`].
pub async fn holding<F: std::future::Future>(place: QueuedRequest, handler: F) -> F::Output {
    PLACE.scope(RefCell::new(Some(place)), handler).await
}

/// The request being handled in this task is parked in a purgatory: it waits for something
/// else (data, replication, a rebalance) and no longer counts against the queue. A no-op
/// outside [`holding`].
pub fn parked() {
    let _ = PLACE.try_with(|place| place.borrow_mut().take());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_queue_holds_the_next_request_until_a_place_is_given_back() {
        let q = RequestQueue::new(2, Some(100));
        let a = q.admit(40).await;
        let _b = q.admit(40).await;
        // Bytes would allow a third, the places do not.
        let third = tokio::time::timeout(Duration::from_millis(50), q.admit(10)).await;
        assert!(third.is_err(), "a third request got a place");
        assert_eq!((q.queued_requests(), q.queued_bytes()), (2, 80));
        drop(a);
        let _c = q.admit(10).await;
        assert_eq!((q.queued_requests(), q.queued_bytes()), (2, 50));
        assert_eq!(q.peak_bytes(), 80);
    }

    #[tokio::test]
    async fn the_byte_bound_holds_and_a_request_larger_than_the_pool_waits_for_it_empty() {
        let q = RequestQueue::new(500, Some(100));
        let a = q.admit(60).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), q.admit(50))
                .await
                .is_err(),
            "110 bytes admitted under a 100-byte bound"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), q.admit(1000))
                .await
                .is_err(),
            "a huge request admitted beside another"
        );
        drop(a);
        let huge = q.admit(1000).await;
        assert_eq!(q.queued_bytes(), 1000);
        drop(huge);
        assert_eq!(q.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn a_parked_handler_gives_its_place_back_before_it_ends() {
        let q = RequestQueue::new(1, None);
        let place = q.admit(10).await;
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let handler = tokio::spawn(holding(place, async move {
            parked();
            let _ = released.await;
        }));
        // The handler still runs, but its place is free.
        let next = tokio::time::timeout(Duration::from_secs(5), q.admit(10)).await;
        assert!(next.is_ok(), "the parked request kept its place");
        let _ = release.send(());
        handler.await.unwrap();
    }
}
