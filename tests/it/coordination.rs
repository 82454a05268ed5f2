//! Integration tests: coordination.
