//! WAL checkpoints on a thread of their own. The writer connection has automatic checkpoints
//! off so a group commit never stops to copy the WAL into the database; this thread runs a
//! PASSIVE checkpoint (which never blocks the writer or readers) every second instead.
//!
//! Under a flood the writer commits back to back, so a PASSIVE checkpoint never finds the WAL
//! fully copied at a moment the writer starts a transaction, and the WAL only grows: every
//! commit then writes to fresh file blocks, which the kernel must allocate and zero (a third of
//! the writer's time in a 24 h backlog drain before schema 8, which also wrote ten times the
//! WAL; still a tenth after it). So when a PASSIVE pass leaves a WAL of more than
//! [`RESTART_FRAMES`], the checkpointer marks a restart due ([`WalRestart`]), and the writer
//! runs the RESTART itself between two group commits: it holds no transaction then, so it
//! never waits for the write lock (the checkpointer asking for it lost that race to a flooding
//! writer nearly every time). It copies the few frames committed since the PASSIVE pass, and
//! the next commit starts the WAL from its beginning again, in blocks already in the page
//! cache. It waits at most [`RESTART_WAIT`] for readers, then gives up until the next round,
//! so a long API read never holds commits back for long.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the WAL is copied back into the database.
const EVERY: Duration = Duration::from_secs(1);
/// WAL frames (pages, 4 KiB) beyond which a checkpoint also restarts the WAL: 32 MiB.
const RESTART_FRAMES: i64 = 8192;
/// Longest a RESTART waits for the write lock or for readers.
const RESTART_WAIT: Duration = Duration::from_millis(100);

/// A WAL restart the checkpointer found due and the writer runs ([`Self::run_if_due`]). The
/// default is never due (a writer without a checkpointer, in tests).
#[derive(Debug, Clone, Default)]
pub struct WalRestart(Arc<AtomicBool>);

impl WalRestart {
    fn mark_due(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// On the writer's connection, outside any transaction: restarts the WAL if due. A restart
    /// that readers hold back past [`RESTART_WAIT`] is left for the next round.
    pub fn run_if_due(&self, conn: &rusqlite::Connection) {
        if !self.0.swap(false, Ordering::Relaxed) {
            return;
        }
        let restarted = conn
            .busy_timeout(RESTART_WAIT)
            .and_then(|()| checkpoint(conn, "RESTART"))
            .and_then(|f| conn.busy_timeout(crate::BUSY_TIMEOUT).map(|()| f));
        if let Err(e) = restarted {
            tracing::debug!(error = %e, "WAL restart held back by readers; next round");
        }
    }
}

/// Starts the checkpointer; it ends after `shutdown`, with a last checkpoint. It marks WAL
/// restarts due on `restart`, which the writer runs.
pub fn spawn(
    db: PathBuf,
    restart: WalRestart,
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
            match checkpoint(&conn, "PASSIVE") {
                Ok(frames) if frames > RESTART_FRAMES => restart.mark_due(),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
            }
            if stopping {
                break;
            }
            std::thread::sleep(EVERY);
        }
    })
}

/// Runs `PRAGMA wal_checkpoint(mode)`; returns the frames in the WAL (-1 when not in WAL mode).
fn checkpoint(conn: &rusqlite::Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(1))
}
