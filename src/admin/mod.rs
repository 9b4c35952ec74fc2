//! The admin listener: Prometheus `/metrics`, the JSON admin API and the web console, on an
//! address of their own (`[admin] listen`, default `127.0.0.1:9180`), apart from the vendor
//! listener, so that a firewall or a loopback bind keeps operators' tools away from clients.
//!
//! Every `/api` route needs `Authorization: Bearer <token>` with one of `[admin] tokens`
//! (compared in constant time); `/metrics` too unless `metrics_public`. The console's assets
//! are compiled into the binary ([`console`]) and need no token: the console asks for one and
//! sends it with its API calls. Errors are `{"error": {"code", "message"}}`.

pub mod api;
pub mod cli;
pub mod console;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::auth::crypto::ct_eq;
use crate::state::AppState;

/// An admin API error.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl AdminError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError { status, code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        AdminError::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }
}

impl From<crate::core::CoreError> for AdminError {
    fn from(e: crate::core::CoreError) -> Self {
        use crate::core::CoreError as E;
        match e {
            E::QueueNotFound => AdminError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such queue"),
            E::MessageNotFound | E::NotInFlight | E::ReceiptStale | E::GroupNotFound => {
                AdminError::new(StatusCode::NOT_FOUND, "NOT_FOUND", e.to_string())
            }
            E::Unavailable(_) | E::ShuttingDown => {
                AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", e.to_string())
            }
            E::Storage(_) => AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()),
            other => AdminError::invalid(other.to_string()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

/// Whether the request carries one of the configured tokens.
fn authorized(st: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return false;
    };
    let mut ok = false;
    for t in &st.config.admin.tokens {
        ok |= ct_eq(t.as_bytes(), token.trim().as_bytes());
    }
    ok
}

async fn require_token(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if !authorized(&st, req.headers()) {
        return AdminError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "a valid admin token is required")
            .into_response();
    }
    next.run(req).await
}

async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !st.config.admin.metrics_public && !authorized(&st, &headers) {
        return AdminError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "a valid admin token is required")
            .into_response();
    }
    let text = st.metrics.render(&st.broker, &st.config.data_dir).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

async fn not_found() -> AdminError {
    AdminError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such admin route")
}

async fn method_not_allowed() -> AdminError {
    AdminError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "the route does not take this method")
}

/// The admin listener's router.
pub fn router(state: AppState) -> Router {
    let api = api::routes().layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .merge(console::routes())
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}
