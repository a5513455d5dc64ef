//! The post registry: which posts may write, how often each reports (data capture needs it)
//! and which MQTT credentials each holds. The store's `posts` tables are the source of truth
//! ([`crate::store::registry`]); [`Registry`] is the running gateway's in-memory copy, reloaded
//! when the registry's version moves (a change through the API, or `gateway posts ...` run beside
//! the gateway). [`manage`] holds the changes technicians make, each validated and audited.

pub mod credentials;
pub mod manage;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use protocol::PostId;
use rusqlite::Connection;

use crate::config::PostEntry;
use crate::store::StoreError;
use credentials::PasswordHash;

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

    /// The registry as the store holds it.
    pub fn load(
        conn: &Connection,
        default_cadence: Duration,
        allow_unregistered: bool,
    ) -> Result<Self, StoreError> {
        let registry = Self::new(&[], default_cadence, allow_unregistered);
        registry.reload(conn)?;
        Ok(registry)
    }

    /// Re-reads the store if its registry changed since the last load; returns whether it did.
    pub fn reload_if_changed(&self, conn: &Connection) -> Result<bool, StoreError> {
        let version = crate::store::registry::version(conn)?;
        if version == self.read().version {
            return Ok(false);
        }
        self.reload(conn)?;
        Ok(true)
    }

    fn reload(&self, conn: &Connection) -> Result<(), StoreError> {
        // The version is read first: a change landing during the load is picked up next time.
        let version = crate::store::registry::version(conn)?;
        let posts = crate::store::registry::all(conn)?
            .into_iter()
            .filter(|p| p.active())
            .map(|p| (p.entry.id.clone(), p.entry))
            .collect();
        let credentials = crate::store::registry::credentials(conn)?
            .into_iter()
            .filter_map(|c| {
                let hash = PasswordHash::parse(&c.password_hash);
                if hash.is_none() {
                    tracing::warn!(post = %c.post, "stored MQTT password hash unreadable; post cannot log in");
                }
                Some((c.username, (c.post, hash?)))
            })
            .collect();
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *inner = Inner {
            posts,
            credentials,
            version,
        };
        Ok(())
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

/// How often a running gateway looks for registry changes made outside it (the CLI).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps `registry` in step with the store until `shutdown`.
pub fn spawn_refresh(
    registry: Registry,
    pool: Arc<crate::store::ReadPool>,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let r = registry.clone();
            match pool.run(move |conn| r.reload_if_changed(conn)).await {
                Ok(true) => tracing::info!("post registry reloaded"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot reload the post registry"),
            }
        }
    })
}
