//! Who is calling: `Authorization: Bearer <token>` matched against the configured tokens, each
//! with a role. Reads are open; every write names the role it needs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use taza_domain::secret::SecretString;

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Acknowledge alerts, draw zones.
    Operator,
    /// Manage posts and credentials.
    Admin,
}

/// A configured API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds it (written to audit records, never the token itself).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The bearer token (at least 16 characters).
    pub token: SecretString,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// Refuses callers below `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                format!("this needs the {role:?} role").to_lowercase(),
            ))
        }
    }
}

/// Compares without an early exit, so response time does not reveal how much of a guess matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Unauthorized("send Authorization: Bearer <token>".into()))?;
        state
            .tokens
            .iter()
            .find(|t| same(t.token.expose().as_bytes(), header.trim().as_bytes()))
            .map(|t| Caller {
                name: t.name.clone(),
                role: t.role,
            })
            .ok_or_else(|| ApiError::Unauthorized("unknown token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below() {
        let op = Caller {
            name: "duty".into(),
            role: Role::Operator,
        };
        assert!(op.require(Role::Viewer).is_ok());
        assert!(op.require(Role::Operator).is_ok());
        assert!(matches!(
            op.require(Role::Admin),
            Err(ApiError::Forbidden(_))
        ));
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"abcd"));
    }
}
