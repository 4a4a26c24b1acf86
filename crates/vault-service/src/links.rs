//! The vault's calls to policy and the ledger, as the `vault` service
//! principal. Anything but an answer is `UNAVAILABLE`: the caller of a guarded
//! call then gets no data (fail closed).
use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use prost::Message;
use quis_auth::ServiceCredentials;
use quis_proto::{
    ledger::{
        AppendEventsRequest, Event, EventDetail, GetCheckpointRequest, GetEntriesRequest, GetEventDetailRequest,
        GetEventDetailsRequest, GetInclusionProofRequest, ledger_service_client::LedgerServiceClient,
    },
    policy::{self as pb, policy_service_client::PolicyServiceClient},
};
use tonic::{Code, Status, service::interceptor::InterceptedService, transport::Channel};
use tonic_types::StatusExt;

use crate::{coalesce::Coalescer, error::ServiceError};

type Authenticated = InterceptedService<Channel, ServiceCredentials>;

fn channel(url: &str, setting: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> Result<Channel, String> {
    let mut endpoint = Channel::from_shared(url.to_string())
        .map_err(|e| format!("{setting} {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("{setting} TLS: {e}"))?;
    }
    // Connects on first use, so policy and the ledger may start later.
    Ok(endpoint.connect_lazy())
}

/// Policy's answer, as the vault enforces and records it.
#[derive(Clone, Debug)]
pub struct Decision {
    pub allowed: bool,
    pub determining_policies: Vec<String>,
    /// The field tags an allowed access may return.
    pub fields: BTreeSet<String>,
    /// What the caller may read; never reveals a restricted compartment or a decoy.
    pub public_reason: String,
    pub policy_version: String,
    /// `grants/{grant}` the access runs under, or empty.
    pub break_glass_grant: String,
    /// When a break-glass started now may last until, in seconds since the epoch.
    pub break_glass_expires_at: Option<i64>,
    /// When the data subject may see the access, in seconds since the epoch (covert investigations).
    pub history_release_at: Option<i64>,
}

impl Decision {
    /// A refusal by the vault itself (a search too broad to be legitimate), recorded like policy's.
    pub fn refused_by_vault(rule: &str, reason: String) -> Self {
        Decision {
            allowed: false,
            determining_policies: vec![rule.to_string()],
            fields: BTreeSet::new(),
            public_reason: reason,
            policy_version: String::new(),
            break_glass_grant: String::new(),
            break_glass_expires_at: None,
            history_release_at: None,
        }
    }
}

impl From<pb::CheckResponse> for Decision {
    fn from(r: pb::CheckResponse) -> Self {
        let obligations = r.obligations.unwrap_or_default();
        Decision {
            allowed: r.allowed,
            determining_policies: r.determining_policies,
            fields: if r.allowed { obligations.fields.into_iter().collect() } else { BTreeSet::new() },
            public_reason: r.public_reason,
            policy_version: r.policy_version,
            break_glass_grant: r.break_glass_grant,
            break_glass_expires_at: obligations.break_glass_expire_time.map(|t| t.seconds),
            history_release_at: obligations.history_release_time.map(|t| t.seconds),
        }
    }
}

/// Policy's refusals of a request are the caller's bad input; anything else means policy is unavailable.
fn policy_error(status: Status) -> ServiceError {
    if status.code() == Code::InvalidArgument {
        let violations = status
            .get_error_details()
            .bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| quis_core::FieldViolation::new(v.field.clone(), v.description.clone()))
                    .collect()
            })
            .unwrap_or_default();
        return quis_vault::VaultError::InvalidArgument(violations).into();
    }
    ServiceError::PolicyUnavailable(format!("{:?}: {}", status.code(), status.message()))
}

fn ledger_error(status: Status) -> ServiceError {
    ServiceError::LedgerUnavailable(format!("{:?}: {}", status.code(), status.message()))
}

/// Most calls in one group.
const MAX_GROUP: usize = 64;
/// A call larger than this, encoded, goes alone, so that a group stays far
/// below the callee's message size limit.
const MAX_GROUPED_BYTES: usize = 8 * 1024;

/// Checks with policy and pushes subjects and grants to it.
#[derive(Clone, Debug)]
pub struct PolicyLink {
    client: PolicyServiceClient<Authenticated>,
    /// Checks made while others are out share one `BatchCheck`.
    checks: Coalescer<pb::CheckRequest, Result<Decision, ServiceError>>,
}

impl PolicyLink {
    /// Starts the check grouping task on the current runtime.
    pub fn new(
        url: &str,
        credentials: ServiceCredentials,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, String> {
        let channel = channel(url, "vault.policy_url", tls)?;
        let client = PolicyServiceClient::with_interceptor(channel, credentials);
        let group_client = client.clone();
        let checks = Coalescer::start(MAX_GROUP, move |checks: Vec<pb::CheckRequest>| {
            Self::check_group(group_client.clone(), checks)
        });
        Ok(Self { client, checks })
    }

    pub async fn check(&self, request: pb::CheckRequest) -> Result<Decision, ServiceError> {
        if request.encoded_len() > MAX_GROUPED_BYTES {
            return Self::check_alone(self.client.clone(), request).await;
        }
        self.checks
            .call(request)
            .await
            .unwrap_or_else(|| Err(ServiceError::PolicyUnavailable("the grouped check went unanswered".into())))
    }

    async fn check_alone(
        mut client: PolicyServiceClient<Authenticated>,
        request: pb::CheckRequest,
    ) -> Result<Decision, ServiceError> {
        let response = client.check(request).await.map_err(policy_error)?;
        Ok(response.into_inner().into())
    }

    /// One `BatchCheck` for a group; a lone check goes as `Check`.
    async fn check_group(
        client: PolicyServiceClient<Authenticated>,
        checks: Vec<pb::CheckRequest>,
    ) -> Vec<Result<Decision, ServiceError>> {
        let n = checks.len();
        if n == 1 {
            return vec![Self::check_alone(client, checks.into_iter().next().expect("one check")).await];
        }
        let request = pb::BatchCheckRequest { checks: checks.clone() };
        match client.clone().batch_check(request).await {
            Ok(response) => {
                let decisions = response.into_inner().decisions;
                if decisions.len() == n {
                    decisions.into_iter().map(|d| Ok(d.into())).collect()
                } else {
                    let wrong = "policy answered a different number of checks";
                    (0..n).map(|_| Err(ServiceError::PolicyUnavailable(wrong.into()))).collect()
                }
            }
            // One caller's bad check refuses the whole batch: each goes alone, so it fails only its own call.
            Err(status) if status.code() == Code::InvalidArgument => {
                futures::future::join_all(checks.into_iter().map(|c| Self::check_alone(client.clone(), c))).await
            }
            Err(status) => (0..n).map(|_| Err(policy_error(status.clone()))).collect(),
        }
    }

    /// Up to 100 checks, answered in order.
    pub async fn batch_check(&self, checks: Vec<pb::CheckRequest>) -> Result<Vec<Decision>, ServiceError> {
        let response = self.client.clone().batch_check(pb::BatchCheckRequest { checks }).await.map_err(policy_error)?;
        Ok(response.into_inner().decisions.into_iter().map(Decision::from).collect())
    }

    pub async fn upsert(&self, entity: pb::entity::Kind, reason: &str) -> Result<(), ServiceError> {
        let request =
            pb::UpsertEntityRequest { entity: Some(pb::Entity { kind: Some(entity) }), reason: reason.into() };
        self.client.clone().upsert_entity(request).await.map_err(policy_error)?;
        Ok(())
    }

    pub async fn delete(&self, name: &str, reason: &str) -> Result<(), ServiceError> {
        let request = pb::DeleteEntityRequest { name: name.into(), reason: reason.into() };
        match self.client.clone().delete_entity(request).await {
            // Already gone (e.g. removed by an administrator): the grant no longer holds either way.
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(policy_error(status)),
        }
    }
}

/// Appends access events to the ledger and reads back entries, proofs and details.
#[derive(Clone, Debug)]
pub struct LedgerLink {
    client: LedgerServiceClient<Authenticated>,
    /// Appends made while others are out share one `AppendEvents`.
    appends: Coalescer<(Event, Vec<EventDetail>), Result<u64, ServiceError>>,
}

/// A signed checkpoint and the tree size it commits to.
pub struct Checkpoint {
    pub note: String,
    pub size: u64,
}

impl LedgerLink {
    pub fn new(
        url: &str,
        credentials: ServiceCredentials,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, String> {
        let channel = channel(url, "vault.ledger_url", tls)?;
        let client = LedgerServiceClient::with_interceptor(channel, credentials);
        let group_client = client.clone();
        let appends = Coalescer::start(MAX_GROUP, move |appends: Vec<(Event, Vec<EventDetail>)>| {
            Self::append_group(group_client.clone(), appends)
        });
        Ok(Self { client, appends })
    }

    /// Appends one event with its details and waits until it is durable; its index.
    pub async fn append(&self, event: Event, details: Vec<EventDetail>) -> Result<u64, ServiceError> {
        if event.encoded_len() + details.iter().map(Message::encoded_len).sum::<usize>() > MAX_GROUPED_BYTES {
            return Self::append_alone(self.client.clone(), event, details).await;
        }
        self.appends
            .call((event, details))
            .await
            .unwrap_or_else(|| Err(ServiceError::LedgerUnavailable("the grouped append went unanswered".into())))
    }

    async fn append_alone(
        mut client: LedgerServiceClient<Authenticated>,
        event: Event,
        details: Vec<EventDetail>,
    ) -> Result<u64, ServiceError> {
        let request = AppendEventsRequest { events: vec![event], details };
        let response = client.append_events(request).await.map_err(ledger_error)?.into_inner();
        match response.indices.as_slice() {
            [index] => Ok(*index),
            _ => Err(ServiceError::LedgerUnavailable("the ledger did not acknowledge exactly one entry".into())),
        }
    }

    /// One `AppendEvents` for a group, answered with each event's index. The
    /// ledger appends all of a call's events or none.
    async fn append_group(
        client: LedgerServiceClient<Authenticated>,
        appends: Vec<(Event, Vec<EventDetail>)>,
    ) -> Vec<Result<u64, ServiceError>> {
        let n = appends.len();
        if n == 1 {
            let (event, details) = appends.into_iter().next().expect("one append");
            return vec![Self::append_alone(client, event, details).await];
        }
        let request = AppendEventsRequest {
            events: appends.iter().map(|(event, _)| event.clone()).collect(),
            details: appends.iter().flat_map(|(_, details)| details.iter().cloned()).collect(),
        };
        match client.clone().append_events(request).await {
            Ok(response) => {
                let indices = response.into_inner().indices;
                if indices.len() == n {
                    indices.into_iter().map(Ok).collect()
                } else {
                    let wrong = "the ledger did not acknowledge exactly one entry per event";
                    (0..n).map(|_| Err(ServiceError::LedgerUnavailable(wrong.into()))).collect()
                }
            }
            // Refused before anything was appended: each goes alone, so a bad event fails only its own call.
            Err(status) if status.code() == Code::InvalidArgument => {
                let alone =
                    appends.into_iter().map(|(event, details)| Self::append_alone(client.clone(), event, details));
                futures::future::join_all(alone).await
            }
            Err(status) => (0..n).map(|_| Err(ledger_error(status.clone()))).collect(),
        }
    }

    pub async fn checkpoint(&self) -> Result<Checkpoint, ServiceError> {
        let r = self.client.clone().get_checkpoint(GetCheckpointRequest {}).await.map_err(ledger_error)?.into_inner();
        Ok(Checkpoint { note: r.checkpoint, size: r.tree_size })
    }

    /// Entries `[start, end)`, as stored and hashed: (index, bytes).
    pub async fn entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, ServiceError> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = GetEntriesRequest { start_index: start, end_index: end, page_size: 1000, page_token };
            let page = self.client.clone().get_entries(request).await.map_err(ledger_error)?.into_inner();
            out.extend(page.entries.into_iter().map(|e| (e.index, e.data)));
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            page_token = page.next_page_token;
        }
    }

    /// The audit path of entry `index` in the tree of `tree_size`.
    pub async fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Vec<u8>>, ServiceError> {
        let request = GetInclusionProofRequest { index, tree_size };
        Ok(self.client.clone().get_inclusion_proof(request).await.map_err(ledger_error)?.into_inner().hashes)
    }

    /// The salt and value behind commitment `digest` of entry `entry`, if the ledger still holds them (not erased).
    pub async fn detail(&self, entry: u64, digest: &[u8]) -> Result<Option<(Vec<u8>, String)>, ServiceError> {
        let request = GetEventDetailRequest { digest: digest.to_vec(), entry_index: Some(entry) };
        match self.client.clone().get_event_detail(request).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Some((r.salt, r.value)))
            }
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(ledger_error(status)),
        }
    }

    /// The salt and value behind each of the commitments (entry, digest) the
    /// ledger still holds, by digest.
    pub async fn details(
        &self,
        commitments: &[(u64, Vec<u8>)],
    ) -> Result<HashMap<Vec<u8>, (Vec<u8>, String)>, ServiceError> {
        let mut out = HashMap::with_capacity(commitments.len());
        for chunk in commitments.chunks(quis_proto::MAX_EVENT_DETAILS_PER_CALL) {
            let request = GetEventDetailsRequest {
                digests: chunk.iter().map(|(_, d)| d.clone()).collect(),
                entry_indexes: chunk.iter().map(|(i, _)| *i).collect(),
            };
            let found = self.client.clone().get_event_details(request).await.map_err(ledger_error)?.into_inner();
            out.extend(found.details.into_iter().map(|d| (d.digest, (d.salt, d.value))));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use quis_auth::{devkeys, mint::TokenSigner};
    use quis_core::{QuisConfig, keys::FileKeySource};
    use quis_proto::ledger::{Action, Decision as Verdict, LedgerEntry};
    use quis_runtime::ServiceContext;
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// The vault's ledger link to a real ledger on loopback.
    async fn vault_link(dir: &std::path::Path, stop: &CancellationToken) -> LedgerLink {
        devkeys::init(dir).expect("dev keys");
        let config = Arc::new(QuisConfig { data_dir: dir.to_path_buf(), ..QuisConfig::default() });
        let verifier = quis_auth::TokenVerifier::from_config(&config, stop.clone()).await.expect("verifier");
        let ctx = ServiceContext { config: Arc::clone(&config), verifier, shutdown: stop.clone() };
        let (built, _, _) = quis_ledger::build(&ctx).await.expect("ledger");
        let addr = quis_testkit::serve_backend(&config, built, stop.clone()).await;
        let signer =
            TokenSigner::load(&FileKeySource::new(dir), &config.auth.issuer, &config.auth.audience).expect("signer");
        let credentials = ServiceCredentials::minted(signer, "vault", Duration::from_secs(300));
        LedgerLink::new(&format!("http://{addr}"), credentials, None).expect("link")
    }

    #[tokio::test]
    async fn a_refused_event_in_a_group_fails_only_its_own_append_and_nothing_is_appended_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stop = CancellationToken::new();
        let link = vault_link(dir.path(), &stop).await;
        // The ledger refuses a detail over 4096 bytes; still small enough to be grouped.
        let (bad_event, mut bad_details) = quis_testkit::access("mallory", "h", Action::Read, Verdict::Allow, "s-x");
        bad_details[0].value = "x".repeat(5000);
        let appends: Vec<_> = (0..20)
            .map(|i| {
                if i == 10 {
                    (bad_event.clone(), bad_details.clone())
                } else {
                    quis_testkit::access(&format!("staff-{i}"), "h", Action::Read, Verdict::Allow, &format!("s-{i}"))
                }
            })
            .collect();
        let results =
            futures::future::join_all(appends.into_iter().map(|(event, details)| link.append(event, details))).await;
        let mut indices = Vec::new();
        for (i, result) in results.iter().enumerate() {
            match (i, result) {
                (10, Err(ServiceError::LedgerUnavailable(_))) => {}
                (10, other) => panic!("the refused event was answered {other:?}"),
                (_, Ok(index)) => indices.push(*index),
                (_, Err(e)) => panic!("append {i} failed with the refused one: {e:?}"),
            }
        }
        indices.sort_unstable();
        assert_eq!(indices, (0..19).collect::<Vec<u64>>(), "each valid event once, the refused one never");
        let (event, details) = quis_testkit::access("staff-last", "h", Action::Read, Verdict::Allow, "s-last");
        assert_eq!(link.append(event, details).await.expect("next"), 19, "nothing else was appended");

        // The ledger stamps one time per call: the valid ones did leave as groups, not all alone.
        let mut times = Vec::new();
        for _ in 0..100 {
            if let Ok(entries) = link.entries(0, 19).await
                && entries.len() == 19
            {
                times = entries
                    .iter()
                    .map(|(_, data)| LedgerEntry::decode(data.as_slice()).expect("entry").sequence_time)
                    .collect();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut distinct = times.clone();
        distinct.dedup();
        assert!(!times.is_empty() && distinct.len() < times.len(), "no two appends shared a call: {times:?}");
        stop.cancel();
    }
}
