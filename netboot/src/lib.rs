//! The sled network boot protocol (ethertype 0x1DE0): a boot server that
//! serves every sled on the segment at once, its link backends (Linux
//! AF_PACKET, illumos DLPI), and an emulator of the sled's client.
//!
//! Not built yet: see the project's issues. This crate exists so that the
//! workspace has its final shape.
