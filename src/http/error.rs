//! `ApiError`: every failure the API answers with, rendered as the contract's
//! `{"error": {"code", "message", "errors"}}` body (§3). Store errors map
//! here, uniqueness violations by index name.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Busy;
use crate::domain::validate::FieldError;
use crate::store::{Constraint, PatchError, StoreError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub errors: Vec<FieldError>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<Duration>,
}

/// The error body, as documented in the OpenAPI document.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), errors: Vec::new(), retry_after: None }
    }

    /// 429: the caller must wait `wait` before its next request counts.
    pub fn rate_limited(wait: Duration) -> Self {
        Self { retry_after: Some(wait), ..Self::from_status(StatusCode::TOO_MANY_REQUESTS) }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self { errors, ..Self::new(StatusCode::BAD_REQUEST, "validation_error", "the request has invalid fields") }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing, invalid or expired access token")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn customer_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "customer_not_found", "no such customer")
    }

    pub fn not_found(code: &'static str, message: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A store error where `NotFound` means the named record, not a customer.
    pub fn missing(code: &'static str, message: &'static str) -> impl Fn(StoreError) -> ApiError {
        move |error| match error {
            StoreError::NotFound => Self::not_found(code, message),
            other => other.into(),
        }
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "an internal error occurred")
    }

    /// The error a bare status maps to, for responses produced outside our
    /// handlers (router fallbacks, limits, timeouts, panics).
    pub fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed on this resource"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "the body must be application/json"),
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
            StatusCode::SERVICE_UNAVAILABLE => ("service_unavailable", "the service is unavailable, try again"),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
            StatusCode::UNAUTHORIZED => ("unauthorized", "missing, invalid or expired access token"),
            StatusCode::FORBIDDEN => ("forbidden", "not allowed"),
            s if s.is_client_error() => ("bad_request", "the request is invalid"),
            _ => ("internal_error", "an internal error occurred"),
        };
        Self::new(status, code, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                errors: self.errors.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = self.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

/// Every Argon2 slot stayed taken: come back in a second.
impl From<Busy> for ApiError {
    fn from(_: Busy) -> Self {
        Self {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_busy",
                "too many secrets are being checked at once; try again",
            )
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::customer_not_found(),
            StoreError::Conflict { constraint } => duplicate(constraint),
            StoreError::Invalid(errors) | StoreError::Rejected(PatchError::Invalid(errors)) => Self::invalid(errors),
            StoreError::Rejected(PatchError::Forbidden(message)) => Self::forbidden(message),
            StoreError::Rejected(PatchError::VersionMismatch) => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the customer has changed since the version named in If-Match",
            ),
            StoreError::IdempotencyKeyReused => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "the Idempotency-Key was used before with a different request body",
            ),
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                Self {
                    retry_after: Some(Duration::from_secs(1)),
                    ..Self::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "database_unavailable",
                        "the database cannot be reached or cannot take writes now; try again",
                    )
                }
            }
            StoreError::TimedOut => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "query_timeout",
                "the query ran past the database's time limit; narrow it or try again later",
            ),
            StoreError::Other(detail) => {
                tracing::error!(%detail, "database error");
                Self::internal()
            }
        }
    }
}

/// One table from unique index to API error (§4.2: a code naming the field).
fn duplicate(constraint: Constraint) -> ApiError {
    let (code, field) = match constraint {
        Constraint::CustomerId => ("duplicate_customer_id", "customer_id"),
        Constraint::Email => ("duplicate_email", "email"),
        Constraint::PhoneNumber => ("duplicate_phone_number", "phone_number"),
        Constraint::Tag => ("duplicate_tag", "tag"),
        Constraint::TokenValue => ("duplicate_token", "value"),
        Constraint::TokenId => ("duplicate_token_id", "token_id"),
        // Clients are made by the CLI, never through the API.
        Constraint::ApiClient | Constraint::Unknown => {
            tracing::error!(?constraint, "unexpected unique violation");
            return ApiError::internal();
        }
    };
    ApiError {
        errors: vec![FieldError::new(field, "duplicate", format!("another record has this {field}"))],
        ..ApiError::bad_request(code, format!("a record with this {field} exists already"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
