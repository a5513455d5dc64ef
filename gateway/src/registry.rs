//! The post registry in memory: which posts may write, and the cadence each reports at (data
//! capture needs it). Loaded from the config's `[[posts]]`; persisted by the store in `posts`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use protocol::PostId;

use crate::config::PostEntry;

/// Shared, cheaply cloned handle to the registry.
#[derive(Debug, Clone)]
pub struct Registry {
    posts: Arc<RwLock<HashMap<PostId, PostEntry>>>,
    default_cadence: Duration,
    allow_unregistered: bool,
}

/// What ingest should do with a post's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A registered post.
    Registered,
    /// Unknown, but the gateway runs with `allow_unregistered` (demo mode).
    Unregistered,
    /// Unknown: refuse.
    Refused,
}

impl Registry {
    /// A registry of `posts`.
    pub fn new(posts: &[PostEntry], default_cadence: Duration, allow_unregistered: bool) -> Self {
        let map = posts.iter().map(|p| (p.id.clone(), p.clone())).collect();
        Self {
            posts: Arc::new(RwLock::new(map)),
            default_cadence,
            allow_unregistered,
        }
    }

    /// Whether `post` may write.
    pub fn admit(&self, post: &PostId) -> Admission {
        if self.read().contains_key(post) {
            Admission::Registered
        } else if self.allow_unregistered {
            Admission::Unregistered
        } else {
            Admission::Refused
        }
    }

    /// Reporting interval of `post` (the default for unregistered posts).
    pub fn cadence(&self, post: &PostId) -> Duration {
        self.read()
            .get(post)
            .and_then(|p| p.cadence)
            .unwrap_or(self.default_cadence)
    }

    /// Every registered post, sorted by id.
    pub fn all(&self) -> Vec<PostEntry> {
        let mut v: Vec<PostEntry> = self.read().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PostId, PostEntry>> {
        // A poisoned lock only means a writer panicked mid-insert of a whole entry; the map is
        // still consistent, so keep serving it.
        self.posts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
