//! The Kafka wire protocol front end, and the inter-node transport of typed messages.
