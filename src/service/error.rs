//! The one error type that requests and WebSocket messages answer with.
//! Each variant maps once to an HTTP status and a wire `code`.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;
use thiserror::Error;

use crate::storage::DbError;

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

/// The body of every error answer, over HTTP and inside WebSocket `error` messages.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `unauthorized`, `forbidden`, `bad_request`, `not_found`, `assignment_not_pending`,
    /// `conflict`, `rate_limited`, `payload_too_large`, `unavailable` or `internal`.
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
}

impl AppError {
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

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
        }
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

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) | AppError::UnknownType(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::NotPending(_) | AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.body())
    }
}
