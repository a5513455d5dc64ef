//! One supervisor for every task the gateway runs. Each stage is adopted with the stop phase it
//! belongs to; the supervisor waits for shutdown or for the first task that ends on its own (a
//! panic, or a return before shutdown). Either way it stops the stages in data-flow order
//! (ingest, then the writer's last commit, then the sink's last flush, then HTTP, then the rest),
//! and a task failure is recorded for `/healthz` and returned, so `gateway` exits non-zero and
//! the service manager (systemd `Restart=on-failure`, Kubernetes) restarts it.
//!
//! Why stop rather than restart the task: every stage holds state the others depend on (the
//! writer's connection, ingest's session, the alert engine's pending windows); a fresh process
//! rebuilds all of it from the store, which is the path the crash tests already prove.

use std::time::Duration;

use taza_api::tasks::{TaskFailure, TaskHealth};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// When a task is waited for during shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopPhase {
    /// Stops taking messages first.
    Ingest,
    /// Commits what ingest handed it.
    Writer,
    /// Flushes what the writer committed.
    Sink,
    /// Stops serving (its own token is cancelled in this phase).
    Http,
    /// Everything that stops with the shutdown token by itself.
    Rest,
}

struct Adopted {
    name: &'static str,
    phase: StopPhase,
    /// Finishes when the task has finished (and reported how).
    watcher: JoinHandle<()>,
}

/// Collects the tasks as `start` spawns them, then runs them.
pub struct Supervisor {
    shutdown: CancellationToken,
    http_stop: CancellationToken,
    health: TaskHealth,
    tasks: Vec<Adopted>,
    events_tx: mpsc::UnboundedSender<TaskFailure>,
    events_rx: mpsc::UnboundedReceiver<TaskFailure>,
}

impl Supervisor {
    /// A supervisor that stops everything when `shutdown` is cancelled, and cancels it itself
    /// when a task fails. `http_stop` is cancelled in the HTTP phase.
    pub fn new(
        shutdown: CancellationToken,
        http_stop: CancellationToken,
        health: TaskHealth,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Self {
            shutdown,
            http_stop,
            health,
            tasks: Vec::new(),
            events_tx,
            events_rx,
        }
    }

    /// Watches a spawned tokio task.
    pub fn adopt(&mut self, name: &'static str, phase: StopPhase, task: JoinHandle<()>) {
        let events = self.events_tx.clone();
        let shutdown = self.shutdown.clone();
        let watcher = tokio::spawn(async move {
            let reason = match task.await {
                Ok(()) if shutdown.is_cancelled() => return,
                Ok(()) => "returned before shutdown".to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
                Err(e) => e.to_string(),
            };
            let _ = events.send(TaskFailure { task: name, reason });
        });
        self.tasks.push(Adopted {
            name,
            phase,
            watcher,
        });
    }

    /// Watches a thread (the store writer, the checkpointer).
    pub fn adopt_thread(
        &mut self,
        name: &'static str,
        phase: StopPhase,
        thread: std::thread::JoinHandle<()>,
    ) {
        let joined = tokio::task::spawn_blocking(move || {
            if let Err(payload) = thread.join() {
                // Re-raise on this blocking task so `adopt` sees a panic with its message.
                std::panic::resume_unwind(payload);
            }
        });
        self.adopt(name, phase, joined);
    }

    /// Runs until shutdown or the first task failure, then stops every task in phase order,
    /// each phase under `deadline`. Returns the failure, if one caused the stop.
    pub async fn run(mut self, deadline: Duration) -> Result<(), TaskFailure> {
        let failure = tokio::select! {
            _ = self.shutdown.cancelled() => None,
            Some(f) = self.events_rx.recv() => Some(f),
        };
        if let Some(f) = &failure {
            tracing::error!(task = f.task, reason = %f.reason, "a gateway task stopped; stopping the gateway");
            self.health.record(f.clone());
            self.shutdown.cancel();
        }
        self.tasks.sort_by_key(|t| t.phase);
        let mut current = None;
        for t in self.tasks {
            if current != Some(t.phase) && t.phase == StopPhase::Http {
                self.http_stop.cancel();
            }
            current = Some(t.phase);
            if tokio::time::timeout(deadline, t.watcher).await.is_err() {
                tracing::warn!(task = t.name, "did not stop within the deadline");
            }
        }
        self.http_stop.cancel();
        // Failures seen while stopping (a panic during the last flush) are logged, not returned:
        // the first cause is what the operator needs.
        while let Ok(f) = self.events_rx.try_recv() {
            tracing::error!(task = f.task, reason = %f.reason, "task failed while stopping");
        }
        tracing::info!("gateway stopped");
        failure.map_or(Ok(()), Err)
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor() -> (Supervisor, CancellationToken, TaskHealth) {
        let shutdown = CancellationToken::new();
        let health = TaskHealth::default();
        let s = Supervisor::new(shutdown.clone(), CancellationToken::new(), health.clone());
        (s, shutdown, health)
    }

    #[tokio::test]
    async fn a_panicking_task_stops_every_other_task_and_is_reported() {
        let (mut s, shutdown, health) = supervisor();
        let (stopped_tx, mut stopped_rx) = mpsc::unbounded_channel();
        for (name, phase) in [("ingest", StopPhase::Ingest), ("sink", StopPhase::Sink)] {
            let stop = shutdown.clone();
            let tx = stopped_tx.clone();
            s.adopt(
                name,
                phase,
                tokio::spawn(async move {
                    stop.cancelled().await;
                    let _ = tx.send(name);
                }),
            );
        }
        s.adopt(
            "alert evaluator",
            StopPhase::Rest,
            tokio::spawn(async { panic!("rule table corrupt") }),
        );
        let result = s.run(Duration::from_secs(5)).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.task, "alert evaluator");
        assert!(failure.reason.contains("rule table corrupt"), "{failure:?}");
        assert_eq!(health.failure(), Some(failure));
        assert!(shutdown.is_cancelled());
        // Stopped in data-flow order.
        assert_eq!(stopped_rx.recv().await, Some("ingest"));
        assert_eq!(stopped_rx.recv().await, Some("sink"));
    }

    #[tokio::test]
    async fn a_thread_that_panics_is_reported_with_its_message() {
        let (mut s, _shutdown, _health) = supervisor();
        let thread = std::thread::spawn(|| panic!("writer lost its connection"));
        s.adopt_thread("store writer", StopPhase::Writer, thread);
        let failure = s.run(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(failure.task, "store writer");
        assert!(
            failure.reason.contains("writer lost its connection"),
            "{failure:?}"
        );
    }

    #[tokio::test]
    async fn a_task_returning_before_shutdown_is_a_failure_but_after_it_is_not() {
        let (mut s, _shutdown, _health) = supervisor();
        s.adopt("config publisher", StopPhase::Rest, tokio::spawn(async {}));
        let failure = s.run(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(failure.reason, "returned before shutdown");

        let (mut s, shutdown, health) = supervisor();
        let stop = shutdown.clone();
        s.adopt(
            "ingest",
            StopPhase::Ingest,
            tokio::spawn(async move { stop.cancelled().await }),
        );
        shutdown.cancel();
        assert_eq!(s.run(Duration::from_secs(5)).await, Ok(()));
        assert_eq!(health.failure(), None);
    }
}
