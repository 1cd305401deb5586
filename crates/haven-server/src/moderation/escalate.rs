//! Escalation to the clearing house (filled in below).

use haven_proto::moderation as m;

use crate::service::{Authed, Service, ServiceError, ServiceResult};

impl Service {
    /// Escalates a case.
    pub async fn mod_escalate(
        &self,
        who: &Authed,
        case: &str,
        _req: m::EscalateRequest,
    ) -> ServiceResult<m::Escalation> {
        let _ = (who, case);
        Err(ServiceError::Internal("unfinished".into()))
    }
}
