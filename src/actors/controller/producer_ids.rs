//! Producer id blocks from `/latest_producer_id_block`, as ZooKeeper-mode Kafka allocates
//! them: each broker claims the next block of 1000 ids with a conditional write, so ids are
//! unique across brokers and restarts without asking the controller.
//!
//! The writes go through this broker's current coordination session, asked of its
//! controller actor each time (the session is renewed after an expiry).

use actix::prelude::*;
use kafka_protocol::error::ResponseError;

use super::actor::{Controller, SessionClient};
use super::zk_client::KafkaZkClient;
use crate::protocol::error::ApiError;

/// Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

pub struct ZkProducerIdAllocator {
    /// This broker's controller actor, which holds its coordination session.
    pub controller: Addr<Controller>,
}

impl Actor for ZkProducerIdAllocator {
    type Context = Context<Self>;
}

impl Handler<AllocateProducerIdBlock> for ZkProducerIdAllocator {
    type Result = ResponseFuture<Result<ProducerIdBlock, ApiError>>;

    fn handle(&mut self, msg: AllocateProducerIdBlock, _: &mut Self::Context) -> Self::Result {
        let controller = self.controller.clone();
        Box::pin(async move {
            let client = controller.send(SessionClient).await.map_err(|_| {
                ApiError::with_message(
                    ResponseError::CoordinatorNotAvailable,
                    "the broker's coordination session is gone",
                )
            })?;
            let (first, last) = KafkaZkClient::new(client)
                .allocate_producer_id_block(msg.broker_id, PRODUCER_ID_BLOCK_SIZE)
                .await
                .map_err(|e| {
                    ApiError::with_message(
                        ResponseError::CoordinatorNotAvailable,
                        format!("allocating a producer id block: {e}"),
                    )
                })?;
            Ok(ProducerIdBlock {
                broker_id: msg.broker_id,
                first,
                last,
            })
        })
    }
}

/// A range of producer ids one broker may hand out on its own, `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub broker_id: i32,
    pub first: i64,
    pub last: i64,
}

/// Asks the cluster-wide producer id allocator for a fresh block (what Kafka's ZooKeeper
/// mode does by updating `/latest_producer_id_block` with a conditional write, and KRaft by
/// AllocateProducerIds). [`ZkProducerIdAllocator`] answers it; tests use their own.
#[derive(Debug, Message)]
#[rtype(result = "Result<ProducerIdBlock, ApiError>")]
pub struct AllocateProducerIdBlock {
    pub broker_id: i32,
}

/// One broker process's current producer id block, shared by its connections: ids come out
/// of it without asking the allocator until it is used up (Kafka's ProducerIdManager).
#[derive(Debug, Default)]
pub struct ProducerIdBlockState {
    /// The next id to hand out and the block's last id; `None` before the first block.
    current: Option<(i64, i64)>,
}

/// Hands out producer ids from blocks obtained from the cluster-wide allocator.
#[derive(Debug, Clone)]
pub struct ProducerIdManager {
    allocator: Recipient<AllocateProducerIdBlock>,
    /// An async mutex: the allocator round trip happens while holding it, so concurrent
    /// InitProducerId requests never fetch two blocks when one would do.
    state: std::sync::Arc<tokio::sync::Mutex<ProducerIdBlockState>>,
}

impl ProducerIdManager {
    pub fn new(allocator: Recipient<AllocateProducerIdBlock>) -> Self {
        Self {
            allocator,
            state: Default::default(),
        }
    }

    /// The next unused producer id.
    pub async fn generate(&self, broker_id: i32) -> Result<i64, ApiError> {
        let mut state = self.state.lock().await;
        if let Some((next, last)) = state.current {
            if next <= last {
                state.current = Some((next + 1, last));
                return Ok(next);
            }
        }
        let block = self
            .allocator
            .send(AllocateProducerIdBlock { broker_id })
            .await
            .map_err(|e| {
                ApiError::with_message(
                    ResponseError::CoordinatorNotAvailable,
                    format!("the producer id allocator is unreachable: {e}"),
                )
            })??;
        state.current = Some((block.first + 1, block.last));
        Ok(block.first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An allocator that hands out 2-id blocks.
    struct TinyBlocks {
        next: i64,
    }

    impl Actor for TinyBlocks {
        type Context = Context<Self>;
    }

    impl Handler<AllocateProducerIdBlock> for TinyBlocks {
        type Result = Result<ProducerIdBlock, ApiError>;

        fn handle(&mut self, msg: AllocateProducerIdBlock, _: &mut Self::Context) -> Self::Result {
            let first = self.next;
            self.next += 2;
            Ok(ProducerIdBlock {
                broker_id: msg.broker_id,
                first,
                last: first + 1,
            })
        }
    }

    #[actix::test]
    async fn the_producer_id_manager_uses_up_a_block_before_asking_for_the_next() {
        let allocator = TinyBlocks { next: 100 }.start();
        let ids = ProducerIdManager::new(allocator.clone().recipient());
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(ids.clone().generate(1).await.unwrap());
        }
        assert_eq!(got, vec![100, 101, 102, 103, 104]);
        // Three blocks were fetched for five ids: the allocator's next block starts at 106.
        let next = allocator
            .send(AllocateProducerIdBlock { broker_id: 1 })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.first, 106);
    }
}
