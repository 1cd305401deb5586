//! The server's JSON request bodies on arbitrary bytes: decoding never panics.
#![no_main]

use haven_proto::{api, contacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<api::RegisterRequest>(data);
    let _ = serde_json::from_slice::<api::LoginRequest>(data);
    let _ = serde_json::from_slice::<api::LinkRequest>(data);
    let _ = serde_json::from_slice::<api::UploadKeyPackages>(data);
    let _ = serde_json::from_slice::<api::CommitRequest>(data);
    let _ = serde_json::from_slice::<api::ProposalRequest>(data);
    let _ = serde_json::from_slice::<api::SendRequest>(data);
    let _ = serde_json::from_slice::<api::AckRequest>(data);
    let _ = serde_json::from_slice::<api::WsClientFrame>(data);
    let _ = serde_json::from_slice::<api::QueueEntry>(data);
    let _ = serde_json::from_slice::<api::CreateGroup>(data);
    let _ = serde_json::from_slice::<api::PutDeviceList>(data);
    let _ = serde_json::from_slice::<api::DeviceLists>(data);
    let _ = serde_json::from_slice::<api::DeviceLinked>(data);
    let _ = serde_json::from_slice::<contacts::ContactRequestBody>(data);
    let _ = serde_json::from_slice::<contacts::MessageSettingBody>(data);
    let _ = serde_json::from_slice::<haven_proto::moderation::Notice>(data);
});
