//! The LAVA test shell: overlay contents written to the device, and console signal parsing.
//!
//! - [`signal`]: bytes from the console → typed events (pure, incremental).
//! - [`results`]: events → LAVA result records, as the dispatcher logs them.
//! - [`overlay`]: job and device data → the `/lava-<id>` file tree for the device.
//! - [`cpio`]: the newc archive format, to append the overlay to a ramdisk.
//!
//! Architecture invariant: nothing here performs I/O; callers feed bytes and write files.

pub mod cpio;
pub mod overlay;
pub mod results;
pub mod signal;
