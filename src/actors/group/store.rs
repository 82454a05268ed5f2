//! The persistence seam between group coordinators and the `__consumer_offsets` log.
//!
//! A coordinator never touches storage itself: it hands key/value records (encoded by
//! [`super::offsets_records`]) to a [`GroupStore`] and replays them from it when it takes over
//! a partition. The broker implements the trait over the partition replica actors of
//! `__consumer_offsets` (an append with acks=all, `offsets.commit.required.acks` = −1); tests
//! use [`InMemoryGroupStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

/// One `__consumer_offsets` record: a key and a value, or a tombstone (`None`).
pub type OffsetsRecord = (Bytes, Option<Bytes>);

/// Durable storage of one broker's `__consumer_offsets` partitions.
///
/// Contract the coordinator relies on:
/// - `append` completes `Ok` only once the records are durable with acks=all semantics (every
///   ISR member has them and the high-water mark covers them). Errors are the log's own codes
///   (`NOT_LEADER_OR_FOLLOWER`, `NOT_ENOUGH_REPLICAS`, `REQUEST_TIMED_OUT`, ...); the
///   coordinator translates them as Kafka's GroupMetadataManager does.
/// - Records land in the log in the order `append` was *called*, not the order the returned
///   futures are polled: an implementation takes its place in line synchronously (an actix
///   `Addr::send` enqueues at call time), so two commits issued back to back keep their order.
/// - `load` returns the partition's records in offset order up to the log end offset (Kafka
///   replays to the log end: the new leader's log is the truth, its high-water mark may lag).
pub trait GroupStore: Send + Sync + 'static {
    fn append(
        &self,
        partition: i32,
        records: Vec<OffsetsRecord>,
    ) -> BoxFuture<'static, Result<(), ResponseError>>;

    fn load(&self, partition: i32)
        -> BoxFuture<'static, Result<Vec<OffsetsRecord>, ResponseError>>;
}

/// An in-memory [`GroupStore`] for tests: one `Vec` per partition, plus switches that make
/// appends wait (to show that nothing completes before it is durable) or fail.
#[derive(Clone, Default)]
pub struct InMemoryGroupStore {
    inner: Arc<Mutex<InMemoryState>>,
    /// While `true`, appended records are stored but their futures do not complete: the
    /// stand-in for an acks=all append waiting on followers.
    hold: Arc<HoldSwitch>,
    /// While `true`, loads do not complete: a partition that takes long to replay.
    hold_loads: Arc<HoldSwitch>,
}

struct HoldSwitch {
    tx: watch::Sender<bool>,
}

impl Default for HoldSwitch {
    fn default() -> Self {
        HoldSwitch {
            tx: watch::channel(false).0,
        }
    }
}

#[derive(Default)]
struct InMemoryState {
    /// Durable records per partition, in append order.
    partitions: HashMap<i32, Vec<OffsetsRecord>>,
    /// When set, every append fails with this code and stores nothing.
    fail_with: Option<ResponseError>,
    /// When set, every load fails with this code.
    fail_load_with: Option<ResponseError>,
}

impl InMemoryGroupStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// All records of `partition`, in order (what a replay would see).
    pub fn records(&self, partition: i32) -> Vec<OffsetsRecord> {
        self.state()
            .partitions
            .get(&partition)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes every later append fail with `error` (or succeed again with `None`).
    pub fn fail_appends(&self, error: Option<ResponseError>) {
        self.state().fail_with = error;
    }

    /// Makes every later load fail with `error` (or succeed again with `None`).
    pub fn fail_loads(&self, error: Option<ResponseError>) {
        self.state().fail_load_with = error;
    }

    /// Holds (`true`) or releases (`false`) the completion of appends.
    pub fn hold_appends(&self, hold: bool) {
        self.hold.tx.send_replace(hold);
    }

    /// Holds (`true`) or releases (`false`) the completion of loads.
    pub fn hold_loads(&self, hold: bool) {
        self.hold_loads.tx.send_replace(hold);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, InMemoryState> {
        // A poisoned lock only means a test thread panicked mid-update; the data is still
        // usable for the remaining assertions.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GroupStore for InMemoryGroupStore {
    fn append(
        &self,
        partition: i32,
        records: Vec<OffsetsRecord>,
    ) -> BoxFuture<'static, Result<(), ResponseError>> {
        // Take the place in line now, as the contract requires.
        let result = {
            let mut state = self.state();
            match state.fail_with {
                Some(e) => Err(e),
                None => {
                    state
                        .partitions
                        .entry(partition)
                        .or_default()
                        .extend(records);
                    Ok(())
                }
            }
        };
        let mut held = self.hold.tx.subscribe();
        Box::pin(async move {
            // Wait until released; a dropped sender means the store is gone, so complete.
            let _ = held.wait_for(|hold| !*hold).await;
            result
        })
    }

    fn load(
        &self,
        partition: i32,
    ) -> BoxFuture<'static, Result<Vec<OffsetsRecord>, ResponseError>> {
        let inner = Arc::clone(&self.inner);
        let mut held = self.hold_loads.tx.subscribe();
        Box::pin(async move {
            let _ = held.wait_for(|hold| !*hold).await;
            // Read when released, so a held load sees what was appended meanwhile.
            let state = inner.lock().unwrap_or_else(|e| e.into_inner());
            match state.fail_load_with {
                Some(e) => Err(e),
                None => Ok(state
                    .partitions
                    .get(&partition)
                    .cloned()
                    .unwrap_or_default()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn appended_records_replay_in_order() {
        let store = InMemoryGroupStore::new();
        let a = (Bytes::from_static(b"k1"), Some(Bytes::from_static(b"v1")));
        let b = (Bytes::from_static(b"k1"), None);
        store.append(3, vec![a.clone()]).await.unwrap();
        store.append(3, vec![b.clone()]).await.unwrap();
        assert_eq!(store.load(3).await.unwrap(), vec![a, b]);
        assert!(store.load(4).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn held_append_completes_only_after_release() {
        let store = InMemoryGroupStore::new();
        store.hold_appends(true);
        let mut fut = store.append(0, vec![(Bytes::from_static(b"k"), None)]);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut fut)
                .await
                .is_err(),
            "append completed while held"
        );
        store.hold_appends(false);
        tokio::time::timeout(Duration::from_secs(5), fut)
            .await
            .expect("append released")
            .unwrap();
    }

    #[tokio::test]
    async fn failing_append_stores_nothing() {
        let store = InMemoryGroupStore::new();
        store.fail_appends(Some(ResponseError::NotEnoughReplicas));
        let res = store
            .append(0, vec![(Bytes::from_static(b"k"), None)])
            .await;
        assert_eq!(res, Err(ResponseError::NotEnoughReplicas));
        assert!(store.records(0).is_empty());
    }
}
