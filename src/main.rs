//! The `optimystic` binary.

use clap::Parser;

/// mimalloc: the actor engine allocates and frees across threads constantly, where
/// glibc malloc spent a quarter of the CPU of a cold read (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = optimystic::cli::Cli::parse();
    std::process::exit(optimystic::cli::run(cli));
}
