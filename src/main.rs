//! The `optimystic` binary.

/// mimalloc: the actor engine allocates and frees across threads constantly, where
/// glibc malloc spent a quarter of the CPU of a cold read (docs/BENCHMARKS.md).
/// Built without transparent huge pages (Cargo.toml: `no_thp`): with them the
/// kernel zeroed a fresh 2 MiB page for memory mostly used a few KiB at a time
/// (8–10% of a loaded cluster's CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = optimystic::cli::parse();
    std::process::exit(optimystic::cli::run(cli));
}
