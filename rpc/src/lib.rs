//! The node's client surface (SPEC §7): JSON-RPC 2.0 over HTTP and WebSocket, REST aliases,
//! admin routes, `/health`, `/sync_status` and `/metrics`.
//!
//! The server reaches the node only through [`NodeApi`], so it holds no globals and can be
//! tested against any implementation of the trait. Start it with [`serve`]; [`router`] gives the
//! same routes without a listener, for tests.
//!
//! | route | what |
//! |---|---|
//! | `POST /`, `POST /rpc` | JSON-RPC 2.0, single calls and batches; 204 for notifications only |
//! | `GET /ws` | the same methods over WebSocket, plus `subscribe` / `unsubscribe` |
//! | `GET /rpc/getHead` (`/rpc/get_head`), `GET /rpc/getBlock/{heightOrHash}` (`/rpc/get_block/{height}`), `GET /rpc/getTx/{hash}`, `GET /rpc/getBalance/{address}` (`/rpc/get_balance/{address}`) | REST reads |
//! | `POST /rpc/sendTx` (`/rpc/send_tx`), `/rpc/submitReceipt`, `/rpc/estimateFee` | REST calls, the body is the params object |
//! | `GET /p2p/peers`, `/sync_status`, `/health`, `/metrics` | operations |
//! | `POST /admin/mintFaucet`, `/admin/peers/add`, `/admin/paramSet` | only with an admin token, `Authorization: Bearer <token>` |
//!
//! REST and admin answers are the bare result with 200, or the JSON-RPC error object with a
//! fitting HTTP status. Error codes are listed in [`codes`].

mod admin;
pub mod api;
mod config;
mod connections;
mod envelope;
mod jsonrpc;
mod methods;
mod metrics;
mod params;
mod rate_limit;
mod respond;
mod rest;
mod server;
mod subscriptions;
mod ws;

pub use api::*;
pub use config::{ConfigError, RpcConfig};
pub use jsonrpc::codes;
pub use metrics::RpcMetrics;
pub use server::{router, serve, serve_metrics};
