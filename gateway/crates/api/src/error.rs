//! The one place that maps failures to HTTP status codes. Callers' mistakes get their text;
//! internal failures get a generic body and a log line with the detail.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use taza_store::StoreError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller asked for something malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No or unknown token.
    #[error("{0}")]
    Unauthorized(String),
    /// The token's role is too low.
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with the current state (acknowledging a resolved alert).
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The department's data files are broken (the message names file and key).
    #[error("{0}")]
    Misconfigured(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            Self::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.clone()),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            Self::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            Self::Misconfigured(m) => {
                tracing::error!(error = %m, "API request failed on configuration");
                (StatusCode::INTERNAL_SERVER_ERROR, m.clone())
            }
            Self::Store(e) => {
                tracing::error!(error = %e, "API request failed in the store");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
