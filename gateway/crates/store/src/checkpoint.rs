//! WAL checkpoints on a thread of their own. The writer connection has automatic checkpoints
//! off so a group commit never stops to copy the WAL into the database; this thread runs a
//! PASSIVE checkpoint (which never blocks the writer or readers) every second instead.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the WAL is copied back into the database.
const EVERY: Duration = Duration::from_secs(1);

/// Starts the checkpointer; it ends after `shutdown`, with a last checkpoint.
pub fn spawn(
    db: PathBuf,
    shutdown: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("taza-checkpoint".into()).spawn(move || {
        let conn = match crate::open_connection(&db) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "checkpointer cannot open the store; the WAL will grow until restart");
                return;
            }
        };
        loop {
            let stopping = shutdown.is_cancelled();
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            }
            if stopping {
                break;
            }
            std::thread::sleep(EVERY);
        }
    })
}
