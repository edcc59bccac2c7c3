//! An API error: a status code and a plain-text message (as Nomad answers).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_server::{ServerError, WriteError};

pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl ApiError {
    pub(crate) fn bad_request(m: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, m.into())
    }
    pub(crate) fn not_found(m: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, m.into())
    }
    pub(crate) fn internal(m: impl Into<String>) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, m.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// The status a write error answers with.
pub(crate) fn write_status(e: &WriteError) -> StatusCode {
    match e {
        WriteError::Rejected(_) => StatusCode::BAD_REQUEST,
        WriteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        let code = match &e {
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::NodeNotConnected(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServerError::Write(w) => write_status(w),
            ServerError::Membership(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServerError::Keyring(k) => match k {
                drover_keyring::KeyringError::NoKek { .. }
                | drover_keyring::KeyringError::NoActiveKey => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        };
        ApiError(code, e.to_string())
    }
}
