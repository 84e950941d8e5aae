//! `aitbc-node` as a library, so its config, key-file and node-home logic can be tested
//! without spawning the binary. The binary (`main.rs`) is a thin clap front end over this.

pub mod config;
pub mod home;
pub mod keys;
