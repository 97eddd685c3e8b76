//! `optimystic backup` and `optimystic restore`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::http::host_port;

/// Downloads `GET /v1/backup` of the node at `addr` into `out`: written to
/// `out.partial`, checked whole, then renamed, so `out` is never a partial file.
pub(super) fn backup(addr: &str, out: &Path) -> i32 {
    match download(addr, out) {
        Ok((records, bytes)) => {
            println!(
                "backup of {records} records ({bytes} bytes) written to {}",
                out.display()
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn download(addr: &str, out: &Path) -> Result<(u64, u64), String> {
    let url = format!("http://{}/v1/backup", host_port(addr)?);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .get(&url)
        .call()
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != 200 {
        let text = body.read_to_string().unwrap_or_default();
        return Err(format!("{url} answered {status}: {text}"));
    }
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let copied = (|| -> Result<u64, String> {
        let mut file = std::fs::File::create(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let n = std::io::copy(&mut body.as_reader(), &mut file)
            .map_err(|e| format!("download from {url} failed: {e}"))?;
        file.flush()
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        Ok(n)
    })();
    let checked = copied.and_then(|bytes| {
        let file = std::fs::File::open(&partial).map_err(|e| e.to_string())?;
        let records = optimystic_actors::storage::backup::read_backup(
            std::io::BufReader::new(file),
            |_, _, _| Ok(()),
        )
        .map_err(|e| format!("the downloaded backup is damaged ({e})"))?;
        Ok((records, bytes))
    });
    match checked {
        Ok(r) => {
            std::fs::rename(&partial, out)
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            Ok(r)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Fills the empty data directory `dir` from the backup `file`.
pub(super) fn restore(file: &Path, dir: &Path) -> i32 {
    match crate::backup::restore(file, dir) {
        Ok(n) => {
            println!("restored {n} records into {}", dir.display());
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
