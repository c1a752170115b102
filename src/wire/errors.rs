//! Where the service's errors meet the wire: each maps once to an HTTP status, and to the
//! protocol's error body over HTTP and WebSocket alike.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};

use crate::{
    protocol::{ParseError, ServerMessage, shapes::ErrorBody},
    service::error::AppError,
};

impl From<&AppError> for ErrorBody {
    fn from(e: &AppError) -> Self {
        ErrorBody {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<&AppError> for ServerMessage {
    fn from(e: &AppError) -> Self {
        ServerMessage::Error { error: e.into() }
    }
}

impl From<ParseError> for AppError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Malformed(message) => AppError::BadRequest(message),
            ParseError::UnknownType(kind) => AppError::UnknownType(kind),
        }
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
        HttpResponse::build(self.status_code()).json(ErrorBody::from(self))
    }
}
