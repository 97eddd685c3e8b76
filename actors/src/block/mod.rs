//! Block actors: the BlockActor owning one active block, the BlockRegistry that
//! activates and passivates them, and StorageRepo, the local repo built on them.

mod actor;
mod handlers;
mod registry;
mod repo;

pub use registry::{BlockRegistry, RegistryOptions};
pub use repo::StorageRepo;
