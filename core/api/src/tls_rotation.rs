//! Drover's extension for the CA made for you: `GET /v1/operator/tls/rotate-ca` shows
//! where a rotation stands, `PUT` takes its next step (trust the new CA everywhere; issue
//! leaves from it; drop the old one), each refused with 409 until the previous one reached
//! every leaf. Answered by the server that holds the CA (the agent gives it as
//! [`CaRotation`]); elsewhere 404.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::{ApiError, ApiState};

pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// A rotation's state (PascalCase, as the rest of the API).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RotationStatus {
    /// stable, trust or issue.
    pub phase: String,
    /// `sha256:` of the CA in use (the old one during a rotation).
    #[serde(rename = "ActiveCA")]
    pub active_ca: String,
    /// `sha256:` of the CA a rotation moves to.
    #[serde(rename = "NextCA")]
    pub next_ca: Option<String>,
    /// Leaves the servers saw agents hold recently.
    pub leaves: usize,
    pub leaves_trusting_next: usize,
    pub leaves_issued_by_next: usize,
    pub leaf_lifetime_secs: u64,
}

/// Why a step was not taken.
#[derive(Debug)]
pub enum RotationError {
    /// The previous step has not reached every leaf (409).
    Refused(String),
    /// Storage or certificates failed (500).
    Failed(String),
}

/// The CA made for you, as the API drives it.
pub trait CaRotation: Send + Sync + 'static {
    fn status(&self) -> RotationStatus;
    fn advance(self: Arc<Self>) -> BoxFuture<Result<RotationStatus, RotationError>>;
}

fn ca(st: &ApiState) -> Result<Arc<dyn CaRotation>, ApiError> {
    st.ca_rotation.clone().ok_or_else(|| {
        ApiError::not_found(
            "this agent holds no CA made for you (tls { rpc = true } without files, on the server that made it); certificates from files are rotated by replacing the files",
        )
    })
}

pub(crate) async fn status(State(st): State<ApiState>) -> Result<Response, ApiError> {
    Ok(axum::Json(ca(&st)?.status()).into_response())
}

pub(crate) async fn advance(State(st): State<ApiState>) -> Result<Response, ApiError> {
    match ca(&st)?.advance().await {
        Ok(s) => Ok(axum::Json(s).into_response()),
        Err(RotationError::Refused(m)) => Err(ApiError(StatusCode::CONFLICT, m)),
        Err(RotationError::Failed(m)) => Err(ApiError::internal(m)),
    }
}
