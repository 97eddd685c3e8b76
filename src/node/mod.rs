//! The embedding API: [`NodeBuilder`] starts a whole node — storage, block actors,
//! RepoService, SwarmActor and (optionally) the HTTP admin server — inside the
//! caller's actix System or actix-web app (no second runtime, no blocking of the
//! caller's thread), and returns a [`NodeHandle`]; [`NodeHandle::shutdown`] stops it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), optimystic::node::NodeError> {
//! use optimystic::node::NodeBuilder;
//! let node = NodeBuilder::new().data_dir("./data").listen("/ip4/127.0.0.1/tcp/0").start().await?;
//! let reply = node.repo().get(serde_json::from_str(r#"{"blockIds":["b1"]}"#).unwrap()).await;
//! println!("{} {:?}", node.peer_id(), reply);
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod builder;
mod config;
mod handle;
mod repo;
mod start;
mod wait;

pub use builder::NodeBuilder;
pub use config::{NodeConfig, DEFAULT_ANTI_ENTROPY, DEFAULT_LISTEN};
pub use handle::NodeHandle;
pub use repo::{NodeRepo, WATCH_POLL};
pub use wait::wait_configured;

use optimystic_actors::net::NetError;
use optimystic_actors::storage::RepoError;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage or actors.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Network.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
}
