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
use crate::actors::local_controller::{AllocateProducerIdBlock, ProducerIdBlock};
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
