//! Break-glass: policy decides whether the caller may start one; the start is
//! recorded in the ledger, then policy holds the time-bound grant (policy sees
//! an active grant, never a flag in a request). Ending it is recorded too and
//! removes the grant from policy.

use quis_auth::{PrincipalKind, Role};
use quis_proto::{ledger, policy as pb, vault as v};
use quis_vault::{names, store::BreakGlassRow};
use rand::RngCore;

use crate::{
    audit::AccessRecord,
    convert::{self, timestamp_us},
    error::{ServiceError, Violations},
    links::Decision,
    service::{CallerInfo, Inner},
};

const MIN_JUSTIFICATION_CHARS: usize = 20;
const MIN_SECONDS: i64 = 60;
/// The longest break-glass the vault starts, whatever policy allows.
const MAX_SECONDS: i64 = 12 * 3600;

fn grant_view(row: &BreakGlassRow) -> v::BreakGlassGrant {
    v::BreakGlassGrant {
        name: format!("grants/{}", row.id),
        grantee: format!("staff/{}", row.grantee),
        subjects: vec![names::subject_name(&row.subject_id)],
        start_time: Some(timestamp_us(row.start_us)),
        expire_time: Some(timestamp_us(row.ended_us.unwrap_or(row.expire_us).min(row.expire_us))),
        ended: row.ended_us.is_some(),
    }
}

impl Inner {
    pub async fn start_break_glass(
        &self,
        caller: &CallerInfo,
        req: v::StartBreakGlassRequest,
    ) -> Result<v::StartBreakGlassResponse, ServiceError> {
        let mut violations = Violations::default();
        let subject = match req.subjects.as_slice() {
            [one] if names::parse_subject(one).is_some() => one.clone(),
            _ => {
                violations.add("subjects", "must hold exactly one subjects/{subject}, an id of [a-z0-9-]{1,64}");
                String::new()
            }
        };
        let justification = req.justification.trim();
        if !(MIN_JUSTIFICATION_CHARS..=convert::MAX_JUSTIFICATION_CHARS).contains(&justification.chars().count()) {
            violations.add(
                "justification",
                format!("must be {MIN_JUSTIFICATION_CHARS} to {} characters", convert::MAX_JUSTIFICATION_CHARS),
            );
        } else if justification.len() > convert::MAX_JUSTIFICATION_BYTES {
            violations.add("justification", quis_proto::detail_value_bytes_rule());
        }
        let seconds = req.duration.map_or(0, |d| d.seconds);
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
            violations.add("duration", format!("must be {MIN_SECONDS} s to {MAX_SECONDS} s"));
        }
        let access_context = v::AccessContext {
            purpose: ledger::Purpose::Emergency as i32,
            case: req.case.clone(),
            justification: req.justification.clone(),
        };
        let ctx = convert::context("", Some(&access_context), convert::CaseRule::Optional, &mut violations);
        if caller.principal.kind != PrincipalKind::Staff {
            return Err(ServiceError::RoleRequired("staff"));
        }
        violations.check()?;
        let decision =
            self.check(Self::check_request(caller, pb::Action::BreakGlass, &subject, Vec::new(), &ctx)).await?;
        let start_us = self.clock.now_ms().saturating_mul(1000);
        let requested_end = start_us.saturating_add(seconds.saturating_mul(1_000_000));
        let expire_us = match decision.break_glass_expires_at {
            Some(limit) => requested_end.min(limit.saturating_mul(1_000_000)),
            None => requested_end,
        };
        let id = format!(
            "bg-{}",
            hex::encode({
                let mut b = [0u8; 8];
                rand::rngs::OsRng.fill_bytes(&mut b);
                b
            })
        );
        let grant = format!("grants/{id}");
        let decision =
            Decision { break_glass_grant: if decision.allowed { grant.clone() } else { String::new() }, ..decision };
        let access =
            AccessRecord::new(&caller.audit(), ledger::Action::BreakGlassStart, ctx.purpose, &ctx.case, &decision)
                .subject(&subject)
                .justification(&ctx.justification);
        let recorded = self.audit.record(access).await?.allowed()?;
        let row = BreakGlassRow {
            id: id.clone(),
            grantee: caller.principal.id.clone(),
            subject_id: names::parse_subject(&subject).unwrap_or_default().to_string(),
            start_us,
            expire_us,
            ended_us: None,
        };
        let seconds_of = |us: i64| prost_types::Timestamp { seconds: us.div_euclid(1_000_000), nanos: 0 };
        let policy_grant = pb::Grant {
            name: grant.clone(),
            staff: format!("staff/{}", caller.principal.id),
            subject: subject.clone(),
            kind: pb::GrantKind::BreakGlass as i32,
            purposes: vec![pb::Purpose::Emergency as i32],
            // Policy bounds the justification at 1024; the whole text is committed in the ledger.
            justification: req.justification.trim().chars().take(1024).collect(),
            start_time: Some(seconds_of(start_us)),
            expire_time: Some(seconds_of(expire_us)),
            granted_by: String::new(),
        };
        self.policy.upsert(pb::entity::Kind::Grant(policy_grant), "break-glass started through the vault").await?;
        self.vault.store().add_break_glass(&row).await.map_err(quis_vault::VaultError::from)?;
        Ok(v::StartBreakGlassResponse { grant: Some(grant_view(&row)), receipt: Some(recorded.receipt()) })
    }

    pub async fn end_break_glass(
        &self,
        caller: &CallerInfo,
        req: v::EndBreakGlassRequest,
    ) -> Result<v::EndBreakGlassResponse, ServiceError> {
        let id = req
            .name
            .strip_prefix("grants/")
            .filter(|id| names::is_valid_id(id))
            .ok_or_else(|| ServiceError::invalid("name", "must be grants/{grant}"))?;
        let store = self.vault.store();
        let row = store
            .break_glass(id)
            .await
            .map_err(quis_vault::VaultError::from)?
            .ok_or_else(|| quis_vault::VaultError::NotFound(req.name.clone()))?;
        let grantee = caller.principal.kind == PrincipalKind::Staff && caller.principal.id == row.grantee;
        if !grantee && !caller.principal.has_role(Role::Admin) {
            return Err(ServiceError::NotGrantee);
        }
        if row.ended_us.is_some() {
            return Err(ServiceError::AlreadyEnded(req.name));
        }
        let decision = Decision {
            allowed: true,
            determining_policies: Vec::new(),
            fields: Default::default(),
            public_reason: "break-glass ended".into(),
            policy_version: String::new(),
            break_glass_grant: req.name.clone(),
            break_glass_expires_at: None,
            history_release_at: None,
        };
        let access = AccessRecord::new(
            &caller.audit(),
            ledger::Action::BreakGlassEnd,
            ledger::Purpose::Emergency,
            "",
            &decision,
        )
        .subject(&names::subject_name(&row.subject_id));
        let recorded = self.audit.record(access).await?;
        self.policy.delete(&req.name, "break-glass ended through the vault").await?;
        let now = self.clock.now_ms().saturating_mul(1000);
        store.end_break_glass(id, now).await.map_err(quis_vault::VaultError::from)?;
        let ended = BreakGlassRow { ended_us: Some(now), ..row };
        Ok(v::EndBreakGlassResponse { grant: Some(grant_view(&ended)), receipt: Some(recorded.receipt()) })
    }
}
