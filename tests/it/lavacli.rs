//! Integration tests: Debian's `lavacli` against the real server.
