//! The key-directory endpoints (table in `haven_proto::api`): thin handlers over
//! [`super::service::Kt`]. Everything but `POST /v1/kt/publish` is public.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use haven_kt::directory::SignedRoot;
use haven_proto::api;
use haven_proto::UserName;

use super::Kt;
use crate::http::{AppState, Device, Id, Reply};
use crate::service::ServiceError;

fn kt(s: &AppState) -> Result<Arc<Kt>, ServiceError> {
    s.kt.clone().ok_or(ServiceError::Internal(
        "this server runs no key directory".into(),
    ))
}

fn epoch_reply(kt: &Kt, root: SignedRoot) -> api::KtEpoch {
    api::KtEpoch {
        signed_root: root.encode().to_vec(),
        root_key: kt.keys().root_key.to_vec(),
        vrf_key: kt.keys().vrf_key.to_vec(),
    }
}

/// A reply that caches can keep for `max_age` seconds.
fn cached<T: serde::Serialize>(r: Result<T, ServiceError>, max_age: u32) -> Response {
    match r {
        Ok(v) => (
            [(header::CACHE_CONTROL, format!("public, max-age={max_age}"))],
            Json(v),
        )
            .into_response(),
        Err(e) => Reply::<T>::from(Err::<T, _>(e)).into_response(),
    }
}

async fn epoch(State(s): State<AppState>) -> Response {
    let r = async {
        let kt = kt(&s)?;
        let root = kt.current_root().await?;
        Ok(epoch_reply(&kt, root))
    }
    .await;
    // The newest epoch changes every interval.
    cached(r, 1)
}

async fn publish(State(s): State<AppState>, Device(_d): Device) -> Reply<api::KtEpoch> {
    async {
        let kt = kt(&s)?;
        let root = kt.publish_pending().await?;
        Ok(epoch_reply(&kt, root))
    }
    .await
    .into()
}

async fn lookup(State(s): State<AppState>, Id(user): Id<UserName>) -> Response {
    let r = async {
        let (root, proof) = kt(&s)?.lookup(&user).await?;
        Ok(api::KtProof {
            signed_root: root.encode().to_vec(),
            proof,
        })
    }
    .await;
    cached(r, 1)
}

async fn history(State(s): State<AppState>, Id(user): Id<UserName>) -> Response {
    let r = async {
        let (root, proof) = kt(&s)?.history(&user).await?;
        Ok(api::KtProof {
            signed_root: root.encode().to_vec(),
            proof,
        })
    }
    .await;
    cached(r, 1)
}

#[derive(serde::Deserialize)]
struct Range {
    from: u64,
    to: u64,
}

async fn audit(
    State(s): State<AppState>,
    q: Result<Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let Query(Range { from, to }) =
            q.map_err(|e| ServiceError::BadRequest(format!("bad query: {e}")))?;
        let (roots, proof) = kt(&s)?.audit(from, to).await?;
        Ok(api::KtAudit {
            roots: roots.iter().map(|r| r.encode().to_vec()).collect(),
            proof,
        })
    }
    .await;
    // A proof between two past epochs never changes.
    cached(r, 86_400)
}

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/kt/epoch", get(epoch))
        .route("/v1/kt/publish", post(publish))
        .route("/v1/kt/lookup/{name}", get(lookup))
        .route("/v1/kt/history/{name}", get(history))
        .route("/v1/kt/audit", get(audit))
}
