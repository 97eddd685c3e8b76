//! A minimal HTTP/1.1 client for the `status`, `inspect` and `peers` commands
//! (the admin server is on loopback; no TLS, no redirects).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Fetches `path` from `addr`; returns the body of a 200 reply.
pub(super) fn get(addr: &str, path: &str) -> Result<String, String> {
    request(addr, "GET", path)
}

/// POSTs an empty body to `path` on `addr`; returns the body of a 200 reply.
pub(super) fn post(addr: &str, path: &str) -> Result<String, String> {
    request(addr, "POST", path)
}

/// `host:port` of an admin address given as `host:port` or as a URL
/// (`http://host:port/metrics`, as devnet prints it); a URL's path is ignored,
/// each command asks for the path it reads.
pub(super) fn host_port(addr: &str) -> Result<&str, String> {
    let rest = match addr.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{addr}: only http:// admin addresses are served (not {scheme}://)"
            ))
        }
        None => addr,
    };
    Ok(rest.split('/').next().unwrap_or(rest))
}

fn request(addr: &str, method: &str, path: &str) -> Result<String, String> {
    let addr = host_port(addr)?;
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("bad address {addr}"))?;
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    s.set_read_timeout(timeout)
        .and_then(|()| s.set_write_timeout(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading reply from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("malformed HTTP reply")?;
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        return Err(format!("{path} answered {status}: {body}"));
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Ok(if chunked {
        dechunk(body)
    } else {
        body.to_string()
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
