//! The device-list endpoints (table in `haven_proto::api`): thin handlers over
//! [`super::service`].

use axum::extract::{Query, State};
use axum::routing::{get, put};
use axum::Router;
use haven_proto::api;
use haven_proto::UserName;

use crate::http::{ApiJson, AppState, Device, Id, Reply};

async fn put_list(
    State(s): State<AppState>,
    Device(d): Device,
    ApiJson(req): ApiJson<api::PutDeviceList>,
) -> Reply<api::DeviceListStored> {
    s.put_device_list(&d, req).await.into()
}

#[derive(serde::Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn lists(
    State(s): State<AppState>,
    Device(d): Device,
    Id(user): Id<UserName>,
    q: Result<Query<After>, axum::extract::rejection::QueryRejection>,
) -> Reply<api::DeviceLists> {
    let after = match q {
        Ok(Query(a)) => a.after,
        Err(e) => {
            let e = crate::service::ServiceError::BadRequest(format!("bad query: {e}"));
            return Err::<api::DeviceLists, _>(e).into();
        }
    };
    s.device_lists(&d, &user, after).await.into()
}

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/devices/list", put(put_list))
        .route("/v1/users/{name}/device-lists", get(lists))
}
