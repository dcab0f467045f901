//! The LAVA test shell: overlay contents written to the device, and console signal parsing.
