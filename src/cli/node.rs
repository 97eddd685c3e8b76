//! `optimystic node`: run until SIGINT/SIGTERM, then shut down cleanly.

use std::io::Write;

use optimystic_actors::block::RegistryOptions;
use optimystic_actors::net::NetEvent;
use tokio::signal::unix::{signal, SignalKind};

use super::NodeArgs;
use crate::node::{Node, NodeConfig};

pub(super) fn run(args: NodeArgs) -> i32 {
    let cfg = NodeConfig {
        data_dir: args.data_dir,
        storage: args.storage,
        listen: args.listen,
        bootstrap: args.bootstrap,
        protocol_prefix: args.protocol_prefix,
        registry: RegistryOptions {
            max_live: args.max_live_blocks,
            ..RegistryOptions::default()
        },
        ..NodeConfig::default()
    };
    let system = actix_rt::System::new();
    match system.block_on(serve(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn serve(cfg: NodeConfig) -> Result<(), String> {
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    let mut node = Node::start(cfg).await.map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            ev = node.next_event() => match ev {
                Some(NetEvent::Listening(addr)) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "listening on {addr}").and_then(|()| out.flush());
                }
                Some(other) => tracing::debug!(?other, "network event"),
                None => break,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}
