//! The AITBC ledger: canonical encoding, keys and signatures, transactions and compute receipts,
//! blocks, the state and its commitment, the store, the mempool and genesis.
//!
//! This crate is the bottom of the workspace: it does no networking and holds no clock, so every
//! node that feeds it the same inputs reaches the same state.

pub mod account;
pub mod address;
pub mod block;
pub mod bytes;
pub mod codec;
pub mod consensus;
pub mod crypto;
pub mod execution;
pub mod genesis;
pub mod hash;
pub mod light;
pub mod mempool;
mod parallel;
pub mod params;
pub mod receipt;
pub mod state;
pub mod store;
pub mod tx;
pub mod validation;
pub mod validator_set;
pub mod vote;

pub use account::Account;
pub use address::Address;
pub use block::{Block, CommitCertificate, Header};
pub use crypto::{PublicKey, SecretKey, Signature};
pub use hash::Hash;
pub use params::Params;
pub use tx::{HashedTx, Tx, TxKind};
