//! [`wait_configured`]: waiting until the nodes of one in-process network agree
//! every region's configuration (devnets, benchmarks).

use super::NodeHandle;

/// Waits (at most `limit`) until the placement drivers of `nodes` — one network
/// of nodes all in this process — have given every region its configuration: the
/// same `min(cluster size, nodes)` members on each of them (docs/CONSENSUS.md,
/// "Configurations"). Devnets and benchmarks wait for it so their first writes do
/// not race the network forming.
pub async fn wait_configured(
    nodes: &[&NodeHandle],
    limit: std::time::Duration,
) -> Result<(), String> {
    let Some(first) = nodes.first() else {
        return Ok(());
    };
    let k = first.configs().cluster_size().min(nodes.len());
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let formed = optimystic_actors::model::Region::all().all(|r| {
            // The configurations its members hold: one, of k members, on each.
            let mine: Vec<_> = nodes
                .iter()
                .filter_map(|n| {
                    let me = n.peer_id().to_string();
                    n.configs().config(r).filter(|c| c.members.contains(&me))
                })
                .collect();
            mine.len() == k && mine.iter().all(|c| c.members.len() == k && *c == mine[0])
        });
        if formed {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the nodes did not agree their configurations within {limit:?}"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
