//! Changes technicians and administrators make to the registry: add, replace, retire a post and
//! issue its MQTT credentials. Each runs in the caller's transaction (either backend), validates
//! first, takes the registry's lock ([`table::lock`]: replicas sharing PostgreSQL change it one
//! at a time, so two cannot both add one post) and writes an audit row (who, when, what: the
//! entry before and after) beside the change.

use std::time::Duration;

use protocol::PostId;
use serde_json::json;

use taza_domain::credentials::{generate_password, PasswordHash, RandomUnavailable};
use taza_domain::post::PostEntry;
use taza_domain::secret::SecretString;
use taza_store::registry::{self as table, ManagedBy, PostRecord};
use taza_store::{Db, StoreError};

/// Why a registry change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such post.
    #[error("post {0} is not in the registry")]
    NotFound(PostId),
    /// `add` of an id already taken.
    #[error("post {0} is already registered (replace it instead)")]
    Exists(PostId),
    /// The post was retired; ids are never reused, so history stays unambiguous.
    #[error("post {0} is retired; a retired id is not reused")]
    Retired(PostId),
    /// The config file owns this post.
    #[error("post {0} is defined in the config file; change it there")]
    ManagedByConfig(PostId),
    /// The entry is not valid.
    #[error("invalid post: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// No randomness for a password.
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Credentials just issued: the only time the password exists in clear.
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    /// The post.
    pub post: PostId,
    /// MQTT user name (the post id).
    pub username: String,
    /// The password, to hand to the technician once.
    pub password: SecretString,
}

fn existing(db: &Db<'_>, post: &PostId) -> Result<Option<PostRecord>, RegistryError> {
    Ok(table::get(db, post)?)
}

fn valid(entry: &PostEntry) -> Result<(), RegistryError> {
    let problems = entry.problems();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RegistryError::Invalid(problems))
    }
}

fn to_json(entry: &PostEntry) -> serde_json::Value {
    serde_json::to_value(entry).unwrap_or(serde_json::Value::Null)
}

/// Registers a new post.
pub fn add(
    db: &Db<'_>,
    entry: &PostEntry,
    actor: &str,
    default_cadence: Duration,
) -> Result<(), RegistryError> {
    valid(entry)?;
    table::lock(db)?;
    match existing(db, &entry.id)? {
        Some(p) if !p.active() => return Err(RegistryError::Retired(entry.id.clone())),
        Some(_) => return Err(RegistryError::Exists(entry.id.clone())),
        None => {}
    }
    table::write(db, entry, ManagedBy::Registry, default_cadence)?;
    table::audit(
        db,
        actor,
        &entry.id,
        "add",
        &json!({ "after": to_json(entry) }),
    )?;
    Ok(())
}

/// Replaces a registered post's details (coordinates, sensors, calibration...).
pub fn replace(
    db: &Db<'_>,
    entry: &PostEntry,
    actor: &str,
    default_cadence: Duration,
) -> Result<(), RegistryError> {
    valid(entry)?;
    table::lock(db)?;
    let before = match existing(db, &entry.id)? {
        None => return Err(RegistryError::NotFound(entry.id.clone())),
        Some(p) if !p.active() => return Err(RegistryError::Retired(entry.id.clone())),
        Some(p) if p.managed_by == ManagedBy::Config => {
            return Err(RegistryError::ManagedByConfig(entry.id.clone()))
        }
        Some(p) => p.entry,
    };
    table::write(db, entry, ManagedBy::Registry, default_cadence)?;
    table::audit(
        db,
        actor,
        &entry.id,
        "update",
        &json!({ "before": to_json(&before), "after": to_json(entry) }),
    )?;
    Ok(())
}

/// Takes a post out of service: its readings are refused from now on and its credentials are
/// deleted. Its history stays.
pub fn retire(db: &Db<'_>, post: &PostId, actor: &str, reason: &str) -> Result<(), RegistryError> {
    table::lock(db)?;
    match existing(db, post)? {
        None => return Err(RegistryError::NotFound(post.clone())),
        Some(p) if !p.active() => return Err(RegistryError::Retired(post.clone())),
        Some(p) if p.managed_by == ManagedBy::Config => tracing::warn!(
            %post,
            "retiring a post the config file lists; remove it there too"
        ),
        Some(_) => {}
    }
    table::retire(db, post)?;
    table::audit(db, actor, post, "retire", &json!({ "reason": reason }))?;
    Ok(())
}

/// Issues new MQTT credentials for `post` (replacing any earlier ones): the user name is the
/// post id, the password is random and returned once; only its hash is stored.
pub fn issue_credentials(
    db: &Db<'_>,
    post: &PostId,
    actor: &str,
) -> Result<IssuedCredentials, RegistryError> {
    table::lock(db)?;
    let record = match existing(db, post)? {
        None => return Err(RegistryError::NotFound(post.clone())),
        Some(p) if !p.active() => return Err(RegistryError::Retired(post.clone())),
        Some(p) => p,
    };
    let password = generate_password()?;
    let hash = PasswordHash::new(password.expose())?;
    let username = post.as_str().to_string();
    table::set_credential(db, post, &username, hash.as_str(), actor)?;
    table::audit(
        db,
        actor,
        post,
        "credentials",
        &json!({ "username": username, "replaced": record.mqtt_username.is_some() }),
    )?;
    Ok(IssuedCredentials {
        post: post.clone(),
        username,
        password,
    })
}

/// Brings the config file's `[[posts]]` into the registry at startup: new ones are added,
/// changed ones rewritten, each change audited as `config`. A post retired through the
/// registry stays retired even if the file still lists it (the file is warned about).
pub fn apply_config_posts(
    db: &Db<'_>,
    posts: &[PostEntry],
    default_cadence: Duration,
) -> Result<(), RegistryError> {
    table::lock(db)?;
    for entry in posts {
        match existing(db, &entry.id)? {
            Some(p) if !p.active() => {
                tracing::warn!(post = %entry.id, "config lists a retired post; it stays retired");
            }
            Some(p) if p.managed_by == ManagedBy::Config && same(&p.entry, entry) => {}
            Some(p) => {
                table::write(db, entry, ManagedBy::Config, default_cadence)?;
                table::audit(
                    db,
                    "config",
                    &entry.id,
                    "update",
                    &json!({ "before": to_json(&p.entry), "after": to_json(entry) }),
                )?;
            }
            None => {
                table::write(db, entry, ManagedBy::Config, default_cadence)?;
                table::audit(
                    db,
                    "config",
                    &entry.id,
                    "add",
                    &json!({ "after": to_json(entry) }),
                )?;
            }
        }
    }
    Ok(())
}

/// Equal as stored (JSON), so a float that round-trips is not a change.
fn same(a: &PostEntry, b: &PostEntry) -> bool {
    to_json(a) == to_json(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use taza_domain::post::PostKind;
    use taza_domain::registry::{Admission, Registry};
    use taza_store::Store;

    use crate::testing::{postgres, sqlite};

    fn entry(id: &str) -> PostEntry {
        let mut e = PostEntry::new(
            PostId::parse(id).unwrap(),
            PostKind::Air,
            "Абая / Байтурсынова",
            43.24,
            76.92,
        );
        e.sensors = vec![protocol::Quantity::Pm2_5];
        e
    }

    const MIN: Duration = Duration::from_secs(60);

    async fn reload(store: &Store, registry: &Registry) -> bool {
        let r = registry.clone();
        store
            .read(move |db| crate::refresh::reload_if_changed(&r, db))
            .await
            .unwrap()
    }

    async fn add_replace_retire_are_audited_and_reach_the_running_copy(store: &Store) {
        let registry = crate::refresh::load(store, MIN, false).await.unwrap();
        let id = PostId::parse("alm-air-100").unwrap();
        assert_eq!(registry.admit(&id), Admission::Refused);

        store
            .write(|db| add(db, &entry("alm-air-100"), "cli:aigerim", MIN))
            .await
            .unwrap();
        assert!(reload(store, &registry).await);
        assert_eq!(registry.admit(&id), Admission::Registered);
        assert!(!reload(store, &registry).await, "nothing changed since");

        let refused = store
            .write(|db| add(db, &entry("alm-air-100"), "x", MIN))
            .await;
        assert!(
            matches!(refused, Err(RegistryError::Exists(_))),
            "{refused:?}"
        );
        let issued = store
            .write({
                let id = id.clone();
                move |db| {
                    let mut moved = entry("alm-air-100");
                    moved.latitude = 43.25;
                    replace(db, &moved, "token:admin", MIN)?;
                    issue_credentials(db, &id, "cli:aigerim")
                }
            })
            .await
            .unwrap();
        reload(store, &registry).await;
        assert_eq!(
            registry.authenticate("alm-air-100", issued.password.expose()),
            Some(id.clone())
        );
        assert_eq!(registry.authenticate("alm-air-100", "guess"), None);

        store
            .write({
                let id = id.clone();
                move |db| retire(db, &id, "cli:aigerim", "box stolen")
            })
            .await
            .unwrap();
        let refused = store
            .write(|db| add(db, &entry("alm-air-100"), "x", MIN))
            .await;
        assert!(
            matches!(refused, Err(RegistryError::Retired(_))),
            "{refused:?}"
        );
        reload(store, &registry).await;
        assert_eq!(registry.admit(&id), Admission::Refused);
        assert_eq!(
            registry.authenticate("alm-air-100", issued.password.expose()),
            None
        );

        let trail = {
            let id = id.clone();
            store
                .read(move |db| table::audit_trail(db, Some(&id), 100))
                .await
                .unwrap()
        };
        let actions: Vec<(&str, &str)> = trail
            .iter()
            .map(|a| (a.action.as_str(), a.actor.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("add", "cli:aigerim"),
                ("update", "token:admin"),
                ("credentials", "cli:aigerim"),
                ("retire", "cli:aigerim")
            ]
        );
        assert_eq!(trail[1].detail["before"]["latitude"], 43.24);
        assert_eq!(trail[1].detail["after"]["latitude"], 43.25);
        assert_eq!(trail[3].detail["reason"], "box stolen");
        // The password is nowhere in the audit trail or the registry, only its hash.
        let dump = store
            .read(|db| {
                Ok(
                    serde_json::to_string(&table::audit_trail(db, None, 1000)?).unwrap()
                        + &serde_json::to_string(&table::all(db)?).unwrap(),
                )
            })
            .await
            .unwrap();
        assert!(!dump.contains(issued.password.expose()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn add_replace_retire_are_audited_and_reach_the_running_copy_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        add_replace_retire_are_audited_and_reach_the_running_copy(&sqlite(dir.path())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn add_replace_retire_are_audited_and_reach_the_running_copy_on_postgres() {
        let Some(store) = postgres("manage::add_replace_retire").await else {
            return;
        };
        add_replace_retire_are_audited_and_reach_the_running_copy(&store).await;
    }

    #[test]
    fn invalid_entries_are_refused_with_every_reason() {
        let mut conn = taza_store::schema::in_memory();
        let mut bad = entry("alm-air-101");
        bad.latitude = 95.0;
        bad.name = " ".into();
        let tx = conn.transaction().unwrap();
        match add(&Db::Sqlite(&tx), &bad, "x", MIN) {
            Err(RegistryError::Invalid(p)) => assert_eq!(p.len(), 2, "{p:?}"),
            other => panic!("{other:?}"),
        }
    }

    async fn config_posts_are_applied_once_and_owned_by_the_file(store: &Store) {
        let posts = vec![entry("alm-air-102")];
        for _ in 0..2 {
            let posts = posts.clone();
            store
                .write(move |db| apply_config_posts(db, &posts, MIN))
                .await
                .unwrap();
        }
        let trail = store
            .read(|db| table::audit_trail(db, None, 10))
            .await
            .unwrap();
        assert_eq!(
            trail.len(),
            1,
            "an unchanged file is not a change: {trail:?}"
        );
        let refused = store
            .write(move |db| replace(db, &posts[0], "x", MIN))
            .await;
        assert!(
            matches!(refused, Err(RegistryError::ManagedByConfig(_))),
            "{refused:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn config_posts_are_applied_once_and_owned_by_the_file_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        config_posts_are_applied_once_and_owned_by_the_file(&sqlite(dir.path())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn config_posts_are_applied_once_and_owned_by_the_file_on_postgres() {
        let Some(store) = postgres("manage::config_posts_applied_once").await else {
            return;
        };
        config_posts_are_applied_once_and_owned_by_the_file(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_adding_one_post_at_once_register_it_once() {
        let Some(url) = taza_store::pg::test_server::database("manage::two_replicas_add_once")
        else {
            return;
        };
        let connect = || async { Store::Pg(taza_store::pg::PgStore::connect(&url).await.unwrap()) };
        let (a, b) = (connect().await, connect().await);
        // Eight technicians on two replicas press "add" together: each attempt reads that
        // the post is absent before it writes, so without the registry's lock several would.
        let attempts = (0..8).map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store
                    .write(move |db| add(db, &entry("alm-air-103"), &format!("t{i}"), MIN))
                    .await
            })
        });
        let mut outcomes = Vec::new();
        for attempt in attempts.collect::<Vec<_>>() {
            outcomes.push(attempt.await.unwrap());
        }
        assert_eq!(
            outcomes.iter().filter(|r| r.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        assert!(
            outcomes
                .iter()
                .filter(|r| r.is_err())
                .all(|r| matches!(r, Err(RegistryError::Exists(_)))),
            "{outcomes:?}"
        );
        let trail = a.read(|db| table::audit_trail(db, None, 10)).await.unwrap();
        assert_eq!(trail.len(), 1, "{trail:?}");
    }
}
