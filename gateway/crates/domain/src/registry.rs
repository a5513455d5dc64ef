//! The post registry: which posts may write, how often each reports (data capture needs it)
//! and which MQTT credentials each holds. The store's `posts` tables are the source of truth
//! (`taza_store::registry`); [`Registry`] is the running gateway's in-memory copy, swapped whole
//! when the registry's version moves (a change through the API, or `gateway posts ...` run beside
//! the gateway; `taza_registry::refresh` watches for it).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use protocol::PostId;

use crate::credentials::PasswordHash;
use crate::post::PostEntry;

/// Shared, cheaply cloned handle to the registry.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<RwLock<Inner>>,
    default_cadence: Duration,
    allow_unregistered: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Posts in service.
    posts: HashMap<PostId, PostEntry>,
    /// MQTT user name -> (post, password hash), posts in service only.
    credentials: HashMap<String, (PostId, PasswordHash)>,
    /// `store::registry::version` this copy reflects.
    version: i64,
}

/// The registry as the store holds it: posts in service and their MQTT credentials.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Posts in service.
    pub posts: Vec<PostEntry>,
    /// Credentials of posts in service.
    pub credentials: Vec<Credential>,
    /// The registry version (newest audit id) read before the rest.
    pub version: i64,
}

/// One post's MQTT login.
#[derive(Debug, Clone)]
pub struct Credential {
    /// MQTT user name.
    pub username: String,
    /// The post it logs in as.
    pub post: PostId,
    /// Its stored hash.
    pub hash: PasswordHash,
}

/// What ingest should do with a post's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A registered post.
    Registered,
    /// Unknown, but the gateway runs with `allow_unregistered` (demo mode).
    Unregistered,
    /// Unknown or retired: refuse.
    Refused,
}

impl Registry {
    /// A registry of `posts` (no credentials).
    pub fn new(posts: &[PostEntry], default_cadence: Duration, allow_unregistered: bool) -> Self {
        let inner = Inner {
            posts: posts.iter().map(|p| (p.id.clone(), p.clone())).collect(),
            ..Inner::default()
        };
        Self {
            inner: Arc::new(RwLock::new(inner)),
            default_cadence,
            allow_unregistered,
        }
    }

    /// The version (`store::registry::version`) this copy reflects.
    pub fn version(&self) -> i64 {
        self.read().version
    }

    /// Swaps in a whole new copy, as the store holds it.
    pub fn replace(&self, snapshot: Snapshot) {
        let inner = Inner {
            posts: snapshot
                .posts
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
            credentials: snapshot
                .credentials
                .into_iter()
                .map(|c| (c.username, (c.post, c.hash)))
                .collect(),
            version: snapshot.version,
        };
        let mut guard = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = inner;
    }

    /// Whether `post` may write.
    pub fn admit(&self, post: &PostId) -> Admission {
        if self.read().posts.contains_key(post) {
            Admission::Registered
        } else if self.allow_unregistered {
            Admission::Unregistered
        } else {
            Admission::Refused
        }
    }

    /// The post that logs in as `username` with `password`, if the credentials are right and
    /// the post is in service.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<PostId> {
        let (post, hash) = self.read().credentials.get(username).cloned()?;
        hash.verify(password).then_some(post)
    }

    /// Reporting interval of `post` (the default for unregistered posts).
    pub fn cadence(&self, post: &PostId) -> Duration {
        self.read()
            .posts
            .get(post)
            .and_then(|p| p.cadence)
            .unwrap_or(self.default_cadence)
    }

    /// The registered post `post`, if in service.
    pub fn get(&self, post: &PostId) -> Option<PostEntry> {
        self.read().posts.get(post).cloned()
    }

    /// Every post in service, sorted by id.
    pub fn all(&self) -> Vec<PostEntry> {
        let mut v: Vec<PostEntry> = self.read().posts.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The cadence assumed for posts that set none.
    pub fn default_cadence(&self) -> Duration {
        self.default_cadence
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A poisoned lock only means a writer panicked while swapping in a whole new copy; the
        // old one is still consistent, so keep serving it.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
