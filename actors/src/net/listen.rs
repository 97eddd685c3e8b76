//! Listening exclusively. libp2p's TCP transport binds listeners with
//! `SO_REUSEPORT`, so a second process (of the same user) can listen on a port a
//! node already holds; both then print `listening` and the kernel splits
//! incoming connections between them at random. Before handing a TCP address to
//! libp2p, [`check_free`] binds it once without `SO_REUSEPORT`: that bind fails
//! while any other socket listens on the port, which turns the mistake into a
//! startup error. (The window between the check and libp2p's bind is the few
//! microseconds of one handler call.)

use std::net::{IpAddr, SocketAddr, TcpListener};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

use super::NetError;

/// Fails when `addr` is a TCP address with a fixed port another socket already
/// listens on. Port 0 and non-TCP addresses (the memory transport) pass.
pub(crate) fn check_free(addr: &Multiaddr) -> Result<(), NetError> {
    let Some(socket) = tcp_socket(addr) else {
        return Ok(());
    };
    if socket.port() == 0 {
        return Ok(());
    }
    match TcpListener::bind(socket) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(NetError::Setup(format!(
            "cannot listen on {addr}: port {} is already in use (another node or process listens on it)",
            socket.port()
        ))),
        // Other failures (no such address, permission) are libp2p's to report.
        _ => Ok(()),
    }
}

/// The socket address of `/ip4|ip6/…/tcp/PORT`, if `addr` is one.
fn tcp_socket(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut it = addr.iter();
    let ip: IpAddr = match it.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match it.next()? {
        Protocol::Tcp(port) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_held_by_another_listener_is_refused() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let err = check_free(&addr).unwrap_err().to_string();
        assert!(err.contains("already in use"), "{err}");
        drop(held);
        assert_eq!(check_free(&addr), Ok(()));
        assert_eq!(check_free(&"/ip4/127.0.0.1/tcp/0".parse().unwrap()), Ok(()));
        assert_eq!(check_free(&"/memory/7".parse().unwrap()), Ok(()));
    }
}
