//! Scheduling: a pure `plan` over a snapshot of queue and devices, and the thin loop that applies it.
