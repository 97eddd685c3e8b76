//! Backup and restore of a node's blocks. A backup is taken from a live node
//! (`GET /v1/backup` of its HTTP admin server, `optimystic backup`): one storage
//! snapshot, so the file holds every block as of one instant however writes go on;
//! a restore (`optimystic restore`) checks the whole file first and then fills an
//! empty data directory from it. The format is `optimystic_actors::storage::backup`'s.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use actix_web::web::Bytes;
use futures::Stream;
use optimystic_actors::storage::backup::{read_backup, BackupWriter};
use optimystic_actors::storage::{EmbeddedOptions, EmbeddedRawStorage, RawStorage, StorageError};
use tokio::sync::mpsc;

/// Bytes sent to the HTTP response at a time.
const CHUNK: usize = 64 << 10;

/// A `Write` that hands its bytes to a response stream in chunks; writing fails
/// once the client has gone, which stops the export.
struct ToStream {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl Write for ToStream {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

/// The backup of `storage` as a byte stream, exported on a thread of its own
/// (a snapshot scan must not hold an async worker). A failure mid-way ends
/// the stream with an error, so the client's file lacks its trailer and no
/// restore accepts it.
pub fn stream(storage: Arc<dyn RawStorage>) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let (tx, rx) = mpsc::channel(8);
    let failed = tx.clone();
    let run = move || {
        let export = || -> Result<u64, StorageError> {
            let io = |e: std::io::Error| StorageError::Io {
                path: "backup stream".into(),
                source: e,
            };
            let mut w = BackupWriter::new(ToStream {
                tx,
                buf: Vec::with_capacity(CHUNK),
            })
            .map_err(io)?;
            storage.export(&mut |space, k, v| w.record(space, k, v).map_err(io))?;
            Ok(w.finish().map_err(io)?.1)
        };
        match export() {
            Ok(n) => tracing::info!(records = n, "backup sent"),
            Err(e) => {
                tracing::warn!(error = %e, "backup failed");
                let _ = failed.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("optimystic-backup".into())
        .spawn(run)
    {
        tracing::warn!(error = %e, "cannot start the backup thread");
    }
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Restores the backup file `file` into the empty (or absent) data directory
/// `dir`, for the embedded backend. The whole file is checked first; when it is
/// damaged or truncated, or `dir` holds anything, nothing is written. Returns
/// the number of records restored.
pub fn restore(file: &Path, dir: &Path) -> Result<u64, String> {
    let open = || {
        std::fs::File::open(file)
            .map(std::io::BufReader::new)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
    };
    let checked = read_backup(open()?, |_, _, _| Ok(()))
        .map_err(|e| format!("{}: {e}; nothing restored", file.display()))?;
    if let Ok(mut entries) = std::fs::read_dir(dir) {
        if entries.next().is_some() {
            return Err(format!(
                "{} is not empty: a backup is restored only into an empty data directory",
                dir.display()
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let store =
        EmbeddedRawStorage::open(dir, EmbeddedOptions::default()).map_err(|e| e.to_string())?;
    let imported = store
        .import(|sink| read_backup(open().map_err(StorageError::Unsupported)?, sink))
        .map_err(|e| e.to_string())?;
    drop(store);
    if imported != checked {
        return Err(format!("read {checked} records, restored {imported}"));
    }
    Ok(imported)
}
