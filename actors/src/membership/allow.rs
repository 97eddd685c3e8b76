//! The allow list of a permissioned network (`--allow-peers FILE`): the PeerIds
//! that may be members of a configuration. Others may still connect as clients.

use std::collections::BTreeSet;

use libp2p::PeerId;

/// Parses an allow list: one PeerId per line; blank lines and text after `#` are
/// ignored. An entry that is not a PeerId, or a list naming nobody, is an error.
pub fn parse_allow_list(text: &str) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let id: PeerId = entry
            .parse()
            .map_err(|_| format!("line {}: {entry:?} is not a PeerId", n + 1))?;
        out.insert(id.to_string());
    }
    if out.is_empty() {
        return Err("the allow list names no PeerId".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_comments_and_errors() {
        let (a, b) = (PeerId::random().to_string(), PeerId::random().to_string());
        let list = parse_allow_list(&format!("# members\n{a}\n\n  {b}  # the second\n"));
        assert_eq!(list, Ok(BTreeSet::from([a.clone(), b])));
        let bad = parse_allow_list(&format!("{a}\nnot-a-peer\n"));
        assert_eq!(bad, Err("line 2: \"not-a-peer\" is not a PeerId".into()));
        assert!(parse_allow_list("# nobody\n\n").is_err());
    }
}
