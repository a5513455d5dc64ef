//! The registry's one door: every operation `gateway posts ...` and the `/api/v1/posts` routes
//! offer (add, replace, retire, provision, commission, list and show with config state, the
//! audit trail). Each change runs in its own write transaction of the [`Store`] (SQLite's admin
//! connection, or the PostgreSQL pool replicas share) and commits together with its audit row;
//! reads are read transactions of the same store. Callers only parse input and format output.
//!
//! Reads and writes the tables of `taza_store::registry` (posts, credentials, audit) and reads
//! `taza_store::status` (post status, readings) for commissioning. With the running gateway's
//! in-memory [`Registry`] attached ([`RegistryService::with_running`]), a change is visible to
//! ingest and the config publisher at once instead of at the next periodic refresh (which is
//! how the other replicas learn of it, [`crate::refresh`]).

use std::sync::Arc;
use std::time::Duration;

use protocol::PostId;

use taza_domain::post::PostEntry;
use taza_domain::registry::Registry;
use taza_ingest::config::BrokerUrl;
use taza_store::read::{self, ConfigState, PostSummary};
use taza_store::registry::{self as table, AuditEntry, PostRecord, StoredCredential};
use taza_store::{Store, StoreError};

use crate::commission::{self, Lang, PlausibleRanges, Report};
use crate::manage::{self, RegistryError};
use crate::provision::{self, ProvisionError, Provisioned};

/// How many audit rows [`RegistryService::show`] returns with a post.
pub const SHOW_AUDIT_ROWS: usize = 200;

/// An error from a caller's step inside a transaction (writing the device blob to disk).
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The registry refused the change, or the store failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The entry cannot be expressed as a post config.
    #[error("post {post}: {reason}")]
    Config {
        /// The post.
        post: PostId,
        /// Why.
        reason: String,
    },
    /// Commissioning a post that is not registered, or retired.
    #[error("post {0} is not in service")]
    NotInService(PostId),
    /// The caller's step before the commit failed; nothing was committed.
    #[error(transparent)]
    Step(StepError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::Registry(RegistryError::Store(e))
    }
}

impl From<ProvisionError> for ServiceError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::Registry(r) => Self::Registry(r),
            ProvisionError::Config { post, reason } => Self::Config { post, reason },
        }
    }
}

/// What the registry's workflows need besides the store.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Cadence of posts that set none.
    pub default_cadence: Duration,
    /// Topic prefix written into device configs.
    pub topic_prefix: String,
    /// The broker address written into device configs ([`provision::post_broker`]).
    pub post_broker: BrokerUrl,
    /// Plausible ranges for commissioning.
    pub ranges: Arc<PlausibleRanges>,
}

/// A post as listed: its summary with the config state filled in, and its registry record
/// (None for a post seen unregistered in demo mode).
#[derive(Debug, Clone)]
pub struct PostView {
    /// Status and details; `config` is set for posts in service whose entry is a valid config.
    pub summary: PostSummary,
    /// The registry record.
    pub record: Option<PostRecord>,
}

/// A post's record and its audit trail.
#[derive(Debug, Clone)]
pub struct PostDetail {
    /// The record (retired posts too).
    pub record: PostRecord,
    /// The newest [`SHOW_AUDIT_ROWS`] audit rows, oldest first.
    pub audit: Vec<AuditEntry>,
}

/// A post about to be commissioned: what the checks compare against.
#[derive(Debug, Clone)]
pub struct Commissioning {
    entry: PostEntry,
    desired_config_hash: u32,
    /// The post's reporting interval.
    pub cadence: Duration,
}

impl Commissioning {
    /// The post.
    pub fn post(&self) -> &PostId {
        &self.entry.id
    }

    /// How long to wait when the caller does not say: two reporting windows and a reconnect.
    pub fn default_wait(&self) -> Duration {
        commission::default_wait(self.cadence)
    }
}

/// The registry service; cheap to clone.
#[derive(Debug, Clone)]
pub struct RegistryService {
    store: Store,
    settings: RegistrySettings,
    running: Option<Registry>,
}

impl RegistryService {
    /// A service on `store`.
    pub fn new(store: Store, settings: RegistrySettings) -> Self {
        Self {
            store,
            settings,
            running: None,
        }
    }

    /// Also brings the running gateway's in-memory registry up to date after each change.
    pub fn with_running(mut self, registry: Registry) -> Self {
        self.running = Some(registry);
        self
    }

    /// The settings.
    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// Brings the config file's `[[posts]]` into the registry ([`manage::apply_config_posts`]).
    pub async fn apply_config_posts(&self, posts: Vec<PostEntry>) -> Result<(), ServiceError> {
        let cadence = self.settings.default_cadence;
        self.store
            .write(move |db| manage::apply_config_posts(db, &posts, cadence))
            .await?;
        self.refresh().await;
        Ok(())
    }

    /// Registers a new post.
    pub async fn add(&self, entry: PostEntry, actor: &str) -> Result<(), ServiceError> {
        let (cadence, actor) = (self.settings.default_cadence, actor.to_string());
        self.store
            .write(move |db| manage::add(db, &entry, &actor, cadence))
            .await?;
        self.refresh().await;
        Ok(())
    }

    /// Replaces a registered post's details.
    pub async fn replace(&self, entry: PostEntry, actor: &str) -> Result<(), ServiceError> {
        let (cadence, actor) = (self.settings.default_cadence, actor.to_string());
        self.store
            .write(move |db| manage::replace(db, &entry, &actor, cadence))
            .await?;
        self.refresh().await;
        Ok(())
    }

    /// Retires a post; `reason` (trimmed, not empty) goes into the audit trail.
    pub async fn retire(
        &self,
        post: PostId,
        actor: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        let reason = reason.trim().to_string();
        if reason.is_empty() {
            return Err(RegistryError::Invalid(vec!["say why the post is retired".into()]).into());
        }
        let actor = actor.to_string();
        self.store
            .write(move |db| manage::retire(db, &post, &actor, &reason))
            .await?;
        self.refresh().await;
        Ok(())
    }

    /// Issues `post`'s credentials and builds its device config blob for `broker` (default: the
    /// settings' post broker). `keep` runs inside the transaction before it commits (the CLI
    /// writes the blob to disk there): if it fails, the old credentials stay valid.
    pub async fn provision<F>(
        &self,
        post: PostId,
        actor: &str,
        broker: Option<BrokerUrl>,
        keep: F,
    ) -> Result<Provisioned, ServiceError>
    where
        F: FnOnce(&Provisioned) -> Result<(), StepError> + Send + 'static,
    {
        let broker = broker.unwrap_or_else(|| self.settings.post_broker.clone());
        let prefix = self.settings.topic_prefix.clone();
        let (cadence, actor) = (self.settings.default_cadence, actor.to_string());
        let done = self
            .store
            .write(move |db| {
                let done = provision::provision(db, &post, &actor, &broker, &prefix, cadence)
                    .map_err(ServiceError::from)?;
                keep(&done).map_err(ServiceError::Step)?;
                Ok::<_, ServiceError>(done)
            })
            .await?;
        self.refresh().await;
        Ok(done)
    }

    /// Every post (retired and unregistered ones too) with its status, its record and whether
    /// it runs the config the registry wants.
    pub async fn list(&self) -> Result<Vec<PostView>, ServiceError> {
        let cadence = self.settings.default_cadence;
        let (posts, records) = self
            .store
            .read(|db| Ok((read::posts(db)?, table::all(db)?)))
            .await?;
        let mut records: std::collections::HashMap<String, PostRecord> = records
            .into_iter()
            .map(|r| (r.entry.id.to_string(), r))
            .collect();
        Ok(posts
            .into_iter()
            .map(|mut summary| {
                let record = records.remove(&summary.id);
                let desired = record
                    .as_ref()
                    .filter(|r| r.active())
                    .and_then(|r| crate::config_push::desired_hash(&r.entry, cadence));
                if let Some(desired) = desired {
                    let reported = summary.status.as_ref().and_then(|s| s.config_hash);
                    summary.config = Some(ConfigState::compare(desired, reported));
                }
                PostView { summary, record }
            })
            .collect())
    }

    /// A post's record (retired ones too) and its audit trail; None if it was never registered.
    pub async fn show(&self, post: PostId) -> Result<Option<PostDetail>, ServiceError> {
        Ok(self
            .store
            .read(move |db| {
                let Some(record) = table::get(db, &post)? else {
                    return Ok(None);
                };
                let audit = table::audit_trail(db, Some(&post), SHOW_AUDIT_ROWS)?;
                Ok(Some(PostDetail { record, audit }))
            })
            .await?)
    }

    /// The audit trail of `post` (everyone's when None), the newest `limit` rows, oldest first.
    pub async fn audit(
        &self,
        post: Option<PostId>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, ServiceError> {
        Ok(self
            .store
            .read(move |db| table::audit_trail(db, post.as_ref(), limit))
            .await?)
    }

    /// Credentials of the posts in service (for Mosquitto's password file).
    pub async fn credentials(&self) -> Result<Vec<StoredCredential>, ServiceError> {
        Ok(self.store.read(table::credentials).await?)
    }

    /// Whether `post` was ever registered (retired posts too).
    pub async fn is_registered(&self, post: PostId) -> Result<bool, ServiceError> {
        Ok(self
            .store
            .read(move |db| Ok(table::get(db, &post)?.is_some()))
            .await?)
    }

    /// Looks up what commissioning `post` checks against: it must be in service and its entry
    /// a valid config.
    pub async fn start_commissioning(&self, post: PostId) -> Result<Commissioning, ServiceError> {
        let id = post.clone();
        let entry = self
            .store
            .read(move |db| table::get(db, &id))
            .await?
            .filter(PostRecord::active)
            .map(|r| r.entry)
            .ok_or(ServiceError::NotInService(post))?;
        let default = self.settings.default_cadence;
        let desired_config_hash = provision::desired_config(&entry, default)?.hash();
        Ok(Commissioning {
            cadence: entry.cadence.unwrap_or(default),
            entry,
            desired_config_hash,
        })
    }

    /// Runs commissioning until every check passes or `wait` is over, and audits the verdict.
    pub async fn commission(
        &self,
        post: Commissioning,
        wait: Duration,
        lang: Lang,
        actor: &str,
    ) -> Result<Report, ServiceError> {
        let report = commission::run(
            self.store.clone(),
            post.entry,
            post.desired_config_hash,
            post.cadence,
            wait,
            self.settings.ranges.clone(),
            lang,
        )
        .await?;
        let summary = serde_json::json!({
            "passed": report.passed,
            "failed": report.failures().map(|c| c.name.clone()).collect::<Vec<_>>(),
        });
        let (id, actor) = (report.post.clone(), actor.to_string());
        self.store
            .write(move |db| table::audit(db, &actor, &id, "commission", &summary))
            .await?;
        Ok(report)
    }

    /// Brings the attached in-memory registry up to date now (the periodic refresh would within
    /// a second), so the caller's next request already sees its change.
    async fn refresh(&self) {
        let Some(registry) = self.running.clone() else {
            return;
        };
        if let Err(e) = self
            .store
            .read(move |db| crate::refresh::reload_if_changed(&registry, db))
            .await
        {
            tracing::warn!(error = %e, "cannot reload the registry after a change");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use taza_domain::post::PostKind;
    use taza_domain::registry::Admission;

    use crate::testing::{postgres, postgres_at, sqlite};

    const MIN: Duration = Duration::from_secs(60);

    fn entry(id: &str) -> PostEntry {
        let mut e = PostEntry::new(PostId::parse(id).unwrap(), PostKind::Air, "x", 43.2, 76.9);
        e.sensors = vec![protocol::Quantity::Pm2_5];
        e
    }

    fn settings() -> RegistrySettings {
        RegistrySettings {
            default_cadence: MIN,
            topic_prefix: "taza".into(),
            post_broker: "mqtt://127.0.0.1:1883".parse().unwrap(),
            ranges: Arc::new(PlausibleRanges::shipped().unwrap()),
        }
    }

    /// A service on `store`, attached to a running copy of the registry.
    async fn service(store: Store) -> (RegistryService, Registry) {
        let running = crate::refresh::load(&store, MIN, false).await.unwrap();
        let service = RegistryService::new(store, settings()).with_running(running.clone());
        (service, running)
    }

    async fn every_change_is_audited_and_reaches_the_running_copy_at_once(store: Store) {
        let (svc, running) = service(store).await;
        let id = PostId::parse("alm-air-400").unwrap();
        svc.add(entry("alm-air-400"), "token:admin").await.unwrap();
        assert!(
            running.get(&id).is_some(),
            "no wait for the periodic refresh"
        );
        assert!(matches!(
            svc.add(entry("alm-air-400"), "x").await,
            Err(ServiceError::Registry(RegistryError::Exists(_)))
        ));

        // A refused step before the commit leaves the post without credentials.
        let refused = svc
            .provision(id.clone(), "cli:aigerim", None, |_| Err("disk full".into()))
            .await;
        assert!(matches!(refused, Err(ServiceError::Step(_))), "{refused:?}");
        let done = svc
            .provision(id.clone(), "cli:aigerim", None, |_| Ok(()))
            .await
            .unwrap();
        assert!(done.summary.contains("mqtt://127.0.0.1:1883"));

        let listed = svc.list().await.unwrap();
        let view = listed
            .iter()
            .find(|v| v.summary.id == "alm-air-400")
            .unwrap();
        assert_eq!(view.summary.config.as_ref().unwrap().state, "unknown");
        assert!(view.record.as_ref().unwrap().mqtt_username.is_some());

        assert!(svc.retire(id.clone(), "x", "  ").await.is_err());
        svc.retire(id.clone(), "token:admin", " stolen ")
            .await
            .unwrap();
        assert!(running.get(&id).is_none());
        assert!(matches!(
            svc.start_commissioning(id.clone()).await,
            Err(ServiceError::NotInService(_))
        ));
        let listed = svc.list().await.unwrap();
        let view = listed
            .iter()
            .find(|v| v.summary.id == "alm-air-400")
            .unwrap();
        assert!(
            view.summary.config.is_none(),
            "a retired post has no desired config"
        );

        let shown = svc.show(id.clone()).await.unwrap().unwrap();
        let trail: Vec<(&str, &str)> = shown
            .audit
            .iter()
            .map(|a| (a.action.as_str(), a.actor.as_str()))
            .collect();
        assert_eq!(
            trail,
            [
                ("add", "token:admin"),
                ("credentials", "cli:aigerim"),
                ("provision", "cli:aigerim"),
                ("retire", "token:admin")
            ]
        );
        assert_eq!(shown.audit[3].detail["reason"], "stolen");
        assert_eq!(svc.audit(None, 10).await.unwrap().len(), 4);
        assert!(svc.credentials().await.unwrap().is_empty());
        assert!(svc
            .show(PostId::parse("alm-air-499").unwrap())
            .await
            .unwrap()
            .is_none());
    }

    async fn commissioning_a_silent_post_fails_and_is_audited(store: Store) {
        let (svc, _) = service(store).await;
        svc.add(entry("alm-air-401"), "t").await.unwrap();
        let c = svc
            .start_commissioning(PostId::parse("alm-air-401").unwrap())
            .await
            .unwrap();
        assert_eq!(c.cadence, MIN);
        assert_eq!(c.default_wait(), commission::default_wait(MIN));
        let report = svc
            .commission(c, Duration::ZERO, Lang::En, "cli:aigerim")
            .await
            .unwrap();
        assert!(!report.passed);
        let trail = svc.audit(None, 10).await.unwrap();
        let last = trail.last().unwrap();
        assert_eq!(
            (last.action.as_str(), last.actor.as_str()),
            ("commission", "cli:aigerim")
        );
        assert_eq!(last.detail["passed"], false);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_change_is_audited_and_reaches_the_running_copy_at_once_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        every_change_is_audited_and_reaches_the_running_copy_at_once(sqlite(dir.path())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_change_is_audited_and_reaches_the_running_copy_at_once_on_postgres() {
        let Some(store) = postgres("service::every_change_is_audited").await else {
            return;
        };
        every_change_is_audited_and_reaches_the_running_copy_at_once(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commissioning_a_silent_post_fails_and_is_audited_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        commissioning_a_silent_post_fails_and_is_audited(sqlite(dir.path())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commissioning_a_silent_post_fails_and_is_audited_on_postgres() {
        let Some(store) = postgres("service::commissioning_a_silent_post").await else {
            return;
        };
        commissioning_a_silent_post_fails_and_is_audited(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_post_added_through_replica_a_is_admitted_by_replica_b_within_two_seconds() {
        let Some(url) = taza_store::pg::test_server::database("service::replica_a_to_b") else {
            return;
        };
        // Two gateways on one PostgreSQL database, each with its own running registry; B
        // learns of A's change only through its periodic refresh.
        let (a, _) = service(postgres_at(&url).await).await;
        let b_store = postgres_at(&url).await;
        let b = crate::refresh::load(&b_store, MIN, false).await.unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let refresh = crate::refresh::spawn(b.clone(), b_store, stop.clone());
        let id = PostId::parse("alm-air-402").unwrap();
        assert_eq!(b.admit(&id), Admission::Refused);

        a.add(entry("alm-air-402"), "token:admin").await.unwrap();
        let added = tokio::time::Instant::now();
        let done = a
            .provision(id.clone(), "token:admin", None, |_| Ok(()))
            .await
            .unwrap();
        // The password the post will log in with, from its device config blob.
        let password = protocol::device_config::decode(&done.blob)
            .unwrap()
            .password
            .to_string();
        while b.admit(&id) != Admission::Registered
            || b.authenticate(id.as_str(), &password).is_none()
        {
            assert!(
                added.elapsed() < Duration::from_secs(2),
                "replica B does not admit the post 2 s after replica A added it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        a.retire(id.clone(), "token:admin", "moved").await.unwrap();
        let retired = tokio::time::Instant::now();
        while b.admit(&id) != Admission::Refused {
            assert!(
                retired.elapsed() < Duration::from_secs(2),
                "replica B still admits the post 2 s after replica A retired it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        refresh.await.unwrap();
    }
}
