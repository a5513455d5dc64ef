//! What the gateway's supervisor tells `/healthz`: the first task that stopped when it should
//! not have (a panic, or a return before shutdown). The supervisor then stops the gateway, so the
//! service manager restarts it; until the process is gone, `/healthz` says why.

use std::sync::{Arc, Mutex};

/// A task that stopped unexpectedly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskFailure {
    /// The task, e.g. `alert evaluator`.
    pub task: &'static str,
    /// What happened: the panic message, or "returned before shutdown".
    pub reason: String,
}

/// Shared between the supervisor (writes) and `/healthz` (reads). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TaskHealth(Arc<Mutex<Option<TaskFailure>>>);

impl TaskHealth {
    /// Records `failure` unless an earlier one is already recorded (the first is the cause).
    pub fn record(&self, failure: TaskFailure) {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(failure);
        }
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<TaskFailure> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
