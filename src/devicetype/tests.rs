//! Unit tests: rendering of every shipped template, typed parsing, error cases.
