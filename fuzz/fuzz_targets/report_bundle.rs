//! Report and moderation request bodies, and the evidence bundle's checks, on arbitrary bytes:
//! decoding and `open_bundle` never panic; content bytes decode or are refused.
#![no_main]

use haven_proto::moderation as m;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<m::ReportRequest>(data) {
        if let Ok(opened) = haven_content::evidence::open_bundle(r.evidence) {
            // Every opened message's content re-decodes to the same value.
            for msg in opened.messages() {
                let again = haven_content::Content::decode(&msg.franked.content).unwrap();
                assert_eq!(again, msg.content);
            }
        }
    }
    let _ = serde_json::from_slice::<m::UserReportRequest>(data);
    let _ = serde_json::from_slice::<m::ActionRequest>(data);
    let _ = serde_json::from_slice::<m::AppealRequest>(data);
    let _ = serde_json::from_slice::<m::AppealDecision>(data);
    let _ = serde_json::from_slice::<m::EscalateRequest>(data);
    let _ = serde_json::from_slice::<m::Notice>(data);
    let _ = haven_content::Content::decode(data);
    let _ = haven_content::content::open_envelope(data);
});
