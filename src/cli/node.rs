//! `optimystic node`: run until SIGINT/SIGTERM, then shut down cleanly (with
//! `--leave-on-shutdown`, after leaving the network gracefully).

use std::io::Write;

use optimystic_actors::net::NetEvent;
use tokio::signal::unix::{signal, SignalKind};

use super::NodeArgs;
use crate::config::Settings;
use crate::node::NodeBuilder;

pub(super) fn run(args: NodeArgs) -> i32 {
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if args.print_config {
        print!("{}", settings.to_toml());
        return 0;
    }
    super::init_logging(&settings.log_format);
    let system = actix_rt::System::new();
    match system.block_on(serve(settings)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn serve(settings: Settings) -> Result<(), String> {
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    let mut node = NodeBuilder::from_settings(&settings)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    if let Some(addr) = node.http_addr() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "http on http://{addr} (/metrics, /status, /v1/repo/*, /v1/peers)"
        )
        .and_then(|()| out.flush());
    }
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
    let left = if settings.leave_on_shutdown {
        let wait = std::time::Duration::from_millis(settings.leave_timeout_ms);
        tokio::select! {
            r = leave(&node, wait) => r,
            _ = term.recv() => Err("leave interrupted by a second signal".to_string()),
            _ = int.recv() => Err("leave interrupted by a second signal".to_string()),
        }
    } else {
        Ok(())
    };
    tracing::info!("shutting down");
    node.shutdown().await;
    left
}

/// `--leave-on-shutdown`: leaves the network, waiting up to `wait` until the
/// node is in no configuration and every block it held is on every member of
/// its configuration.
async fn leave(node: &crate::node::NodeHandle, wait: std::time::Duration) -> Result<(), String> {
    tracing::info!("leaving the network before stopping");
    let deadline = tokio::time::Instant::now() + wait;
    let mut progress = node.repo().leave().await.map_err(|e| e.to_string())?;
    while !progress.done {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not left after {wait:?}: still a member of {} regions, {} blocks stored ({} other live peers, {} needed)",
                progress.regions, progress.copies, progress.replacements, progress.cluster_size
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        progress = node
            .repo()
            .leave_progress()
            .await
            .map_err(|e| e.to_string())?;
    }
    tracing::info!("left the network");
    Ok(())
}
