//! Built-in read-only TFTP server with per-job roots.
