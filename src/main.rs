//! The `optimystic` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc: the actor engine allocates and frees across threads constantly, where
/// glibc malloc spent a quarter of the CPU of a cold read (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,libp2p_kad=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = optimystic::cli::Cli::parse();
    std::process::exit(optimystic::cli::run(cli));
}
