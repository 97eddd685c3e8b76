//! A node process started with `RUST_LOG=info`, its log (stderr) read line by
//! line, for tests of what a node logs.

/// A node started with `RUST_LOG=info` and its stderr read line by line.
pub struct LoggedNode {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub addr: String,
}

impl LoggedNode {
    pub fn start(dir: &std::path::Path, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(super::BIN)
            .args(["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let addr = out
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
            .unwrap();
        Self { child, lines, addr }
    }

    /// Waits (deadline 30 s) for a log line holding every one of `parts`.
    pub fn expect(&self, parts: &[&str]) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {parts:?}"));
            if parts.iter().all(|p| line.contains(p)) {
                return line;
            }
        }
    }
}

impl Drop for LoggedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
