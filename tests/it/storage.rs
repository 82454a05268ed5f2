//! Integration tests: storage.
