//! Changes technicians and administrators make to the registry: add, replace, retire a post and
//! issue its MQTT credentials. Each runs in the caller's transaction, validates first, and writes
//! an audit row (who, when, what: the entry before and after) beside the change.

use std::time::Duration;

use protocol::PostId;
use rusqlite::Transaction;
use serde_json::json;

use taza_domain::credentials::{generate_password, PasswordHash, RandomUnavailable};
use taza_domain::post::PostEntry;
use taza_domain::secret::SecretString;
use taza_store::registry::{self as table, ManagedBy, PostRecord};
use taza_store::StoreError;

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

impl From<rusqlite::Error> for RegistryError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
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

fn existing(tx: &Transaction<'_>, post: &PostId) -> Result<Option<PostRecord>, RegistryError> {
    Ok(table::get(tx, post)?)
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
    tx: &Transaction<'_>,
    entry: &PostEntry,
    actor: &str,
    default_cadence: Duration,
) -> Result<(), RegistryError> {
    valid(entry)?;
    match existing(tx, &entry.id)? {
        Some(p) if !p.active() => return Err(RegistryError::Retired(entry.id.clone())),
        Some(_) => return Err(RegistryError::Exists(entry.id.clone())),
        None => {}
    }
    table::write(tx, entry, ManagedBy::Registry, default_cadence)?;
    table::audit(
        tx,
        actor,
        &entry.id,
        "add",
        &json!({ "after": to_json(entry) }),
    )?;
    Ok(())
}

/// Replaces a registered post's details (coordinates, sensors, calibration...).
pub fn replace(
    tx: &Transaction<'_>,
    entry: &PostEntry,
    actor: &str,
    default_cadence: Duration,
) -> Result<(), RegistryError> {
    valid(entry)?;
    let before = match existing(tx, &entry.id)? {
        None => return Err(RegistryError::NotFound(entry.id.clone())),
        Some(p) if !p.active() => return Err(RegistryError::Retired(entry.id.clone())),
        Some(p) if p.managed_by == ManagedBy::Config => {
            return Err(RegistryError::ManagedByConfig(entry.id.clone()))
        }
        Some(p) => p.entry,
    };
    table::write(tx, entry, ManagedBy::Registry, default_cadence)?;
    table::audit(
        tx,
        actor,
        &entry.id,
        "update",
        &json!({ "before": to_json(&before), "after": to_json(entry) }),
    )?;
    Ok(())
}

/// Takes a post out of service: its readings are refused from now on and its credentials are
/// deleted. Its history stays.
pub fn retire(
    tx: &Transaction<'_>,
    post: &PostId,
    actor: &str,
    reason: &str,
) -> Result<(), RegistryError> {
    match existing(tx, post)? {
        None => return Err(RegistryError::NotFound(post.clone())),
        Some(p) if !p.active() => return Err(RegistryError::Retired(post.clone())),
        Some(p) if p.managed_by == ManagedBy::Config => tracing::warn!(
            %post,
            "retiring a post the config file lists; remove it there too"
        ),
        Some(_) => {}
    }
    table::retire(tx, post)?;
    table::audit(tx, actor, post, "retire", &json!({ "reason": reason }))?;
    Ok(())
}

/// Issues new MQTT credentials for `post` (replacing any earlier ones): the user name is the
/// post id, the password is random and returned once; only its hash is stored.
pub fn issue_credentials(
    tx: &Transaction<'_>,
    post: &PostId,
    actor: &str,
) -> Result<IssuedCredentials, RegistryError> {
    let record = match existing(tx, post)? {
        None => return Err(RegistryError::NotFound(post.clone())),
        Some(p) if !p.active() => return Err(RegistryError::Retired(post.clone())),
        Some(p) => p,
    };
    let password = generate_password()?;
    let hash = PasswordHash::new(password.expose())?;
    let username = post.as_str().to_string();
    table::set_credential(tx, post, &username, hash.as_str(), actor)?;
    table::audit(
        tx,
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
    tx: &Transaction<'_>,
    posts: &[PostEntry],
    default_cadence: Duration,
) -> Result<(), RegistryError> {
    for entry in posts {
        match existing(tx, &entry.id)? {
            Some(p) if !p.active() => {
                tracing::warn!(post = %entry.id, "config lists a retired post; it stays retired");
            }
            Some(p) if p.managed_by == ManagedBy::Config && same(&p.entry, entry) => {}
            Some(p) => {
                table::write(tx, entry, ManagedBy::Config, default_cadence)?;
                table::audit(
                    tx,
                    "config",
                    &entry.id,
                    "update",
                    &json!({ "before": to_json(&p.entry), "after": to_json(entry) }),
                )?;
            }
            None => {
                table::write(tx, entry, ManagedBy::Config, default_cadence)?;
                table::audit(
                    tx,
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

    use taza_store::schema::in_memory as db;

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

    #[test]
    fn add_replace_retire_are_audited_and_reach_the_running_copy() {
        let mut conn = db();
        let registry = crate::refresh::load(&conn, MIN, false).unwrap();
        let id = PostId::parse("alm-air-100").unwrap();
        assert_eq!(
            registry.admit(&id),
            taza_domain::registry::Admission::Refused
        );

        let tx = conn.transaction().unwrap();
        add(&tx, &entry("alm-air-100"), "cli:aigerim", MIN).unwrap();
        tx.commit().unwrap();
        assert!(crate::refresh::reload_if_changed(&registry, &conn).unwrap());
        assert_eq!(
            registry.admit(&id),
            taza_domain::registry::Admission::Registered
        );
        assert!(
            !crate::refresh::reload_if_changed(&registry, &conn).unwrap(),
            "nothing changed since"
        );

        let tx = conn.transaction().unwrap();
        assert!(matches!(
            add(&tx, &entry("alm-air-100"), "x", MIN),
            Err(RegistryError::Exists(_))
        ));
        let mut moved = entry("alm-air-100");
        moved.latitude = 43.25;
        replace(&tx, &moved, "token:admin", MIN).unwrap();
        let issued = issue_credentials(&tx, &id, "cli:aigerim").unwrap();
        tx.commit().unwrap();
        crate::refresh::reload_if_changed(&registry, &conn).unwrap();
        assert_eq!(
            registry.authenticate("alm-air-100", issued.password.expose()),
            Some(id.clone())
        );
        assert_eq!(registry.authenticate("alm-air-100", "guess"), None);

        let tx = conn.transaction().unwrap();
        retire(&tx, &id, "cli:aigerim", "box stolen").unwrap();
        assert!(matches!(
            add(&tx, &entry("alm-air-100"), "x", MIN),
            Err(RegistryError::Retired(_))
        ));
        tx.commit().unwrap();
        crate::refresh::reload_if_changed(&registry, &conn).unwrap();
        assert_eq!(
            registry.admit(&id),
            taza_domain::registry::Admission::Refused
        );
        assert_eq!(
            registry.authenticate("alm-air-100", issued.password.expose()),
            None
        );

        let trail = table::audit_trail(&conn, Some(&id), 100).unwrap();
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
        let dump = serde_json::to_string(&table::audit_trail(&conn, None, 1000).unwrap()).unwrap()
            + &serde_json::to_string(&table::all(&conn).unwrap()).unwrap();
        assert!(!dump.contains(issued.password.expose()));
    }

    #[test]
    fn invalid_entries_are_refused_with_every_reason() {
        let mut conn = db();
        let mut bad = entry("alm-air-101");
        bad.latitude = 95.0;
        bad.name = " ".into();
        let tx = conn.transaction().unwrap();
        match add(&tx, &bad, "x", MIN) {
            Err(RegistryError::Invalid(p)) => assert_eq!(p.len(), 2, "{p:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_posts_are_applied_once_and_owned_by_the_file() {
        let mut conn = db();
        let posts = [entry("alm-air-102")];
        for _ in 0..2 {
            let tx = conn.transaction().unwrap();
            apply_config_posts(&tx, &posts, MIN).unwrap();
            tx.commit().unwrap();
        }
        let trail = table::audit_trail(&conn, None, 10).unwrap();
        assert_eq!(
            trail.len(),
            1,
            "an unchanged file is not a change: {trail:?}"
        );
        let tx = conn.transaction().unwrap();
        assert!(matches!(
            replace(&tx, &posts[0], "x", MIN),
            Err(RegistryError::ManagedByConfig(_))
        ));
    }
}
