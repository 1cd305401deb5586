//! The voucher database endpoints (table in `haven_proto::api`): public, unauthenticated
//! reads — the database is what every client downloads, and its history is for anyone.

use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use haven_proto::api;

use crate::http::{AppState, Reply};
use crate::service::ServiceError;

async fn release(State(s): State<AppState>) -> Reply<api::PsiRelease> {
    s.psi_release().await.into()
}

async fn releases(State(s): State<AppState>) -> Reply<api::PsiReleases> {
    s.psi_releases().await.into()
}

async fn db(State(s): State<AppState>, Path(n): Path<String>) -> Response {
    let Ok(n) = n.parse::<u64>() else {
        let e = ServiceError::BadRequest("a release number is a positive integer".into());
        return Reply::<()>::from(Err::<(), _>(e)).into_response();
    };
    match s.psi_db(n).await {
        Ok(bytes) => ([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => Reply::<()>::from(Err::<(), _>(e)).into_response(),
    }
}

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/psi/release", get(release))
        .route("/v1/psi/releases", get(releases))
        .route("/v1/psi/db/{release}", get(db))
}
