//! Unit tests for job definitions.
