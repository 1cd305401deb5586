//! The contact endpoints (table in `haven_proto::contacts`): thin handlers over
//! [`super::service`].

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::Router;
use haven_proto::api;
use haven_proto::contacts as c;
use haven_proto::UserName;

use crate::http::{ApiJson, AppState, Device, Id, Reply};

async fn request(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<c::ContactRequestBody>,
) -> Reply<api::Accepted> {
    s.request_contact(&d, req).await.into()
}

async fn accept(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.answer_contact(&d, &user, true).await.into()
}

async fn decline(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.answer_contact(&d, &user, false).await.into()
}

async fn remove(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.remove_contact(&d, &user).await.into()
}

async fn list(State(s): State<AppState>, Device(d): Device) -> Reply<c::ContactList> {
    s.contacts(&d).await.into()
}

async fn block(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.block(&d, &user, true).await.into()
}

async fn unblock(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.block(&d, &user, false).await.into()
}

async fn restrict(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.restrict(&d, &user, true).await.into()
}

async fn unrestrict(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.restrict(&d, &user, false).await.into()
}

async fn requests(State(s): State<AppState>, Device(d): Device) -> Reply<c::MessageRequests> {
    s.message_requests(&d).await.into()
}

async fn accept_requests(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.answer_requests(&d, &user, true).await.into()
}

async fn decline_requests(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<api::Accepted> {
    s.answer_requests(&d, &user, false).await.into()
}

async fn messages_setting(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<c::MessageSettingBody>,
) -> Reply<api::Accepted> {
    s.set_message_setting(&d, req).await.into()
}

async fn me(State(s): State<AppState>, Device(d): Device) -> Reply<c::Me> {
    s.me(&d).await.into()
}

async fn signals(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
) -> Reply<c::RiskReport> {
    s.risk_report(&d, &user).await.into()
}

async fn policy(State(s): State<AppState>) -> Reply<c::PolicyView> {
    s.policy_view().into()
}

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/contacts", get(list))
        .route("/v1/contacts/requests", post(request))
        .route("/v1/contacts/{user}", axum::routing::delete(remove))
        .route("/v1/contacts/{user}/accept", post(accept))
        .route("/v1/contacts/{user}/decline", post(decline))
        .route("/v1/blocks/{user}", put(block).delete(unblock))
        .route("/v1/restricts/{user}", put(restrict).delete(unrestrict))
        .route("/v1/requests", get(requests))
        .route("/v1/requests/{user}/accept", post(accept_requests))
        .route("/v1/requests/{user}/decline", post(decline_requests))
        .route("/v1/settings/messages", put(messages_setting))
        .route("/v1/me", get(me))
        .route("/v1/mod/signals/{user}", get(signals))
        .route("/v1/policy", get(policy))
}
