//! `aitbc-node` as a library, so its parts can be tested without spawning the binary. The
//! binary (`main.rs`) is a thin clap front end over this.

pub mod admission;
pub mod api;
pub mod client;
pub mod config;
pub mod core;
pub mod home;
pub mod keys;
pub mod light;
pub mod light_api;
pub mod logging;
pub mod malloc;
pub mod metrics;
pub mod net;
pub mod run;
pub mod shared;
pub mod sync;
