//! Optimystic: a peer-to-peer database node storing versioned blocks.
//!
//! # Layout
//! - [`cli`]: the `optimystic` command line (clap), one module per subcommand.
//! - [`local`]: opening a node-local repo (storage backend + block actors).
//! - The engine lives in the [`optimystic_actors`] crate, re-exported as [`engine`].

pub mod cli;
pub mod local;

pub use optimystic_actors as engine;
