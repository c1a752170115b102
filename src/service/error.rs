//! The one error type that the service's operations answer with. The wire edge maps each variant
//! once to an HTTP status and to the protocol's error body.

use thiserror::Error;

use crate::{domain::input::InputError, storage::DbError};

#[derive(Debug, Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    NotFound(String),
    #[error("assignment {0} is no longer pending")]
    NotPending(i64),
    #[error("{0}")]
    Conflict(String),
    #[error("too many messages; this one was dropped")]
    RateLimited,
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the database is not answering; try again shortly")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    /// The error's name on the wire, in HTTP bodies and WebSocket `error` messages alike.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::BadRequest(_) => "bad_request",
            AppError::UnknownType(_) => "unknown_type",
            AppError::NotFound(_) => "not_found",
            AppError::NotPending(_) => "assignment_not_pending",
            AppError::Conflict(_) => "conflict",
            AppError::RateLimited => "rate_limited",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::Unavailable => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }
}

impl From<InputError> for AppError {
    fn from(e: InputError) -> Self {
        AppError::BadRequest(e.0)
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            log::warn!("database unavailable: {e}");
            AppError::Unavailable
        } else {
            log::error!("database error: {e}");
            AppError::Internal(e.to_string())
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        DbError::from(e).into()
    }
}
