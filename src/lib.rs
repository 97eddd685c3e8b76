//! Optimystic: a peer-to-peer database node storing versioned blocks.
//!
//! # Layout
//! - [`admin`]: the HTTP admin server (`/metrics`, `/status`, `/v1/repo/*`).
//! - [`backup`]: a live node's blocks to one file, and back into a data directory.
//! - [`cli`]: the `optimystic` command line (clap), one module per subcommand.
//! - [`config`]: settings from defaults, a TOML file, environment and flags.
//! - [`copies`]: which peers hold which revision of one block.
//! - [`health`]: what `/health` and `/ready` judge.
//! - [`load`]: the load generator of `bench`, `devnet` and the benches.
//! - [`local`]: opening a node-local repo (storage backend + block actors).
//! - [`watch`]: where a block watch reads (this node, or a remote one).
//! - [`node`]: a running node (storage, block actors, RepoService, SwarmActor).
//! - The engine lives in the [`optimystic_actors`] crate, re-exported as [`engine`].

pub mod admin;
pub mod backup;
pub mod cli;
pub mod config;
pub mod copies;
pub mod health;
pub mod load;
pub mod local;
pub mod node;
pub mod watch;

pub use optimystic_actors as engine;
