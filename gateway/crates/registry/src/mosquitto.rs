//! Mosquitto's password file and ACL for an external broker, written from the registry by
//! `gateway posts broker-auth`: one line per post in service with credentials (the stored
//! `$7$` hash, so no password is needed to write it), plus the gateway's own account. Retired
//! posts drop out; reload Mosquitto (SIGHUP) after writing.

use taza_domain::credentials::PasswordHash;
use taza_store::registry::StoredCredential;

/// The password file: `user:$7$...` lines, gateway first.
pub fn password_file(gateway: (&str, &PasswordHash), posts: &[StoredCredential]) -> String {
    let mut out = format!("{}:{}\n", gateway.0, gateway.1.as_str());
    for c in posts {
        out.push_str(&format!("{}:{}\n", c.username, c.password_hash));
    }
    out
}

/// The ACL: each post (user name = post id, `%u`) writes only its own telemetry and status and
/// reads only its own config; the gateway reads every post's telemetry and status and writes
/// every post's config.
pub fn acl(prefix: &str, gateway_user: &str) -> String {
    format!(
        "# Mosquitto ACL for Taza, written by `gateway posts broker-auth`.\n\
         # Every post logs in with its post id as user name (%u): it may publish only its own\n\
         # telemetry and status (its retained birth message and last will too) and read only its\n\
         # own config. No other topic is open to posts.\n\
         \n\
         pattern write {prefix}/v1/posts/%u/telemetry\n\
         pattern write {prefix}/v1/posts/%u/status\n\
         pattern read {prefix}/v1/posts/%u/config\n\
         \n\
         # The gateway reads every post's telemetry and status and writes every post's config.\n\
         user {gateway_user}\n\
         topic read {prefix}/v1/posts/+/telemetry\n\
         topic read {prefix}/v1/posts/+/status\n\
         topic write {prefix}/v1/posts/+/config\n"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_acl_grants_what_the_shipped_one_does() {
        // deploy/mosquitto/acl is what compose mounts; the generated ACL must not drift from it.
        let shipped = include_str!("../../../../deploy/mosquitto/acl");
        let rules = |text: &str| -> Vec<String> {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect()
        };
        assert_eq!(rules(&acl("taza", "gateway")), rules(shipped));
    }
}
