//! Producer id blocks from `/latest_producer_id_block`, as ZooKeeper-mode Kafka allocates
//! them: each broker claims the next block of 1000 ids with a conditional write, so ids are
//! unique across brokers and restarts without asking the controller.

use actix::prelude::*;
use kafka_protocol::error::ResponseError;

use super::zk_client::KafkaZkClient;
use crate::actors::local_controller::{AllocateProducerIdBlock, ProducerIdBlock};
use crate::protocol::error::ApiError;

/// Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

pub struct ZkProducerIdAllocator {
    pub zk: KafkaZkClient,
}

impl Actor for ZkProducerIdAllocator {
    type Context = Context<Self>;
}

impl Handler<AllocateProducerIdBlock> for ZkProducerIdAllocator {
    type Result = ResponseFuture<Result<ProducerIdBlock, ApiError>>;

    fn handle(&mut self, msg: AllocateProducerIdBlock, _: &mut Self::Context) -> Self::Result {
        let zk = self.zk.clone();
        Box::pin(async move {
            let (first, last) = zk
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
