//! Integration tests: devicetype.
