//! Integration tests: kafka_clients.
