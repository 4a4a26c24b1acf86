//! The policy service over real sockets, on SQLite and on PostgreSQL: two
//! replicas sharing one store and a real ledger. A change to an assignment or
//! to the policy set takes effect on the very next check on both replicas and
//! is in the ledger first; a change the ledger cannot record is refused and
//! not stored; administrators cannot administer themselves and a policy-set
//! version needs a second administrator; bad input names its field.
mod support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use prost::Message;
use quis_auth::{
    PrincipalKind, Role,
    mint::{TokenSigner, TokenSpec},
};
use quis_core::{QuisConfig, health::Readiness, keys::FileKeySource};
use quis_proto::{
    ledger::{
        GetCheckpointRequest, GetEntriesRequest, LedgerEntry, event::Kind, ledger_service_client::LedgerServiceClient,
    },
    policy::{
        self as pb, ApprovePolicySetVersionRequest, BatchCheckRequest, BatchUpsertEntitiesRequest, CheckContext,
        CheckRequest, CreatePolicySetVersionRequest, DeleteEntityRequest, Entity, ListEntitiesRequest,
        UpsertEntityRequest, ValidatePolicySetRequest, entity::Kind as E, policy_service_client::PolicyServiceClient,
    },
};
use support::*;
use tokio_util::sync::CancellationToken;
use tonic::{Code, transport::Channel};
use tonic_types::StatusExt;

struct World {
    _dir: tempfile::TempDir,
    signer: TokenSigner,
    config: Arc<QuisConfig>,
    ledger: SocketAddr,
    /// Two replicas on one store.
    a: SocketAddr,
    b: SocketAddr,
    stop: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves one policy replica of `config`.
async fn replica(config: &Arc<QuisConfig>, stop: &CancellationToken) -> SocketAddr {
    let ctx = ctx(config, stop).await;
    let (built, _) = quis_policy::build(&ctx).await.expect("policy");
    let (l, addr) = listener().await;
    tokio::spawn(async move { quis_runtime::serve(&ctx, built, l, Readiness::default()).await });
    addr
}

impl World {
    async fn start(postgres: bool) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(dir.path());
        config.store.url = store_url(postgres).await;
        config.ledger.checkpoint_interval_ms = 20;
        let stop = CancellationToken::new();
        let base = Arc::new(config.clone());
        let lctx = ctx(&base, &stop).await;
        let (built, _, _) = quis_ledger::build(&lctx).await.expect("ledger");
        let (l, ledger) = listener().await;
        tokio::spawn(async move { quis_runtime::serve(&lctx, built, l, Readiness::default()).await });
        config.policy.ledger_url = Some(format!("http://{ledger}"));
        let config = Arc::new(config);
        let a = replica(&config, &stop).await;
        let b = replica(&config, &stop).await;
        let signer = TokenSigner::load(&FileKeySource::new(dir.path()), &config.auth.issuer, &config.auth.audience)
            .expect("signer");
        let world = World { _dir: dir, signer, config, ledger, a, b, stop };
        // The built-in pack is installed (through the ledger) at first start.
        let admin = world.token("root", PrincipalKind::Staff, &[Role::Admin]);
        let installed = eventually(Duration::from_secs(10), async || {
            world
                .client(a)
                .await
                .get_policy_set_version(with_token(
                    pb::GetPolicySetVersionRequest { name: "policySets/active".into() },
                    &admin,
                ))
                .await
                .is_ok()
        })
        .await;
        assert!(installed, "the default pack was not installed");
        world
    }

    fn token(&self, sub: &str, kind: PrincipalKind, roles: &[Role]) -> String {
        self.signer.mint(&TokenSpec::new(sub, kind, roles)).expect("mint").0
    }

    fn admin(&self, sub: &str) -> String {
        self.token(sub, PrincipalKind::Staff, &[Role::Admin])
    }

    fn vault(&self) -> String {
        self.token("vault", PrincipalKind::Service, &[Role::Service])
    }

    async fn client(&self, addr: SocketAddr) -> PolicyServiceClient<Channel> {
        PolicyServiceClient::new(channel(addr).await)
    }

    /// Admin events in the ledger: (operation, resource, new_version).
    async fn admin_events(&self) -> Vec<(String, String, String)> {
        let auditor = self.token("auditor-1", PrincipalKind::Staff, &[Role::Auditor]);
        let mut ledger = LedgerServiceClient::new(channel(self.ledger).await);
        let size = ledger
            .get_checkpoint(with_token(GetCheckpointRequest {}, &auditor))
            .await
            .expect("checkpoint")
            .into_inner()
            .tree_size;
        if size == 0 {
            return Vec::new();
        }
        let entries = ledger
            .get_entries(with_token(
                GetEntriesRequest { start_index: 0, end_index: size, page_size: 1000, page_token: String::new() },
                &auditor,
            ))
            .await
            .expect("entries")
            .into_inner()
            .entries;
        entries
            .iter()
            .filter_map(|e| match LedgerEntry::decode(e.data.as_slice()).ok()?.event?.kind? {
                Kind::Admin(a) => Some((a.operation, a.resource, a.new_version)),
                _ => None,
            })
            .collect()
    }

    /// Waits until the ledger's checkpoint shows `n` admin events.
    async fn wait_admin_events(&self, n: usize) -> Vec<(String, String, String)> {
        let mut last = Vec::new();
        eventually(Duration::from_secs(5), async || {
            last = self.admin_events().await;
            last.len() >= n
        })
        .await;
        last
    }
}

fn staff(id: &str, team: &str, status: pb::StaffStatus) -> Entity {
    Entity {
        kind: Some(E::Staff(pb::Staff {
            name: format!("staff/{id}"),
            team: format!("teams/{team}"),
            site: "hq".into(),
            roles: vec!["caseworker".into()],
            clearances: vec![],
            status: status as i32,
            surname_key: vec![1; 32],
            address_key: vec![2; 32],
            household_key: vec![],
        })),
    }
}

fn team(id: &str) -> Entity {
    Entity { kind: Some(E::Team(pb::Team { name: format!("teams/{id}"), site: "hq".into(), parent: String::new() })) }
}

fn subject(id: &str) -> Entity {
    Entity {
        kind: Some(E::Subject(pb::Subject {
            name: format!("subjects/{id}"),
            surname_key: vec![3; 32],
            address_key: vec![4; 32],
            ..Default::default()
        })),
    }
}

fn case(id: &str, subjects: &[&str], staff: &[&str], status: pb::CaseStatus) -> Entity {
    Entity {
        kind: Some(E::Case(pb::Case {
            name: format!("cases/{id}"),
            subjects: subjects.iter().map(|s| format!("subjects/{s}")).collect(),
            assigned_staff: staff.iter().map(|s| format!("staff/{s}")).collect(),
            assigned_teams: vec![],
            status: status as i32,
            purpose: pb::Purpose::Casework as i32,
        })),
    }
}

fn read(principal: &str, subject: &str) -> CheckRequest {
    CheckRequest {
        principal: principal.into(),
        action: pb::Action::Read as i32,
        resource: format!("subjects/{subject}"),
        fields: vec![],
        context: Some(CheckContext {
            purpose: pb::Purpose::Casework as i32,
            case: "cases/c-1".into(),
            source_address: "10.1.2.3".into(),
            ..Default::default()
        }),
    }
}

async fn check(world: &World, at: SocketAddr, request: CheckRequest) -> pb::CheckResponse {
    world.client(at).await.check(with_token(request, &world.vault())).await.expect("check").into_inner()
}

/// Alice (team north), subject s-1, and an open casework case on s-1 assigned to alice.
async fn organization(world: &World) {
    world
        .client(world.a)
        .await
        .batch_upsert_entities(with_token(
            BatchUpsertEntitiesRequest {
                entities: vec![
                    team("north"),
                    staff("alice", "north", pb::StaffStatus::Active),
                    staff("bob", "north", pb::StaffStatus::Active),
                    subject("s-1"),
                    case("c-1", &["s-1"], &["alice"], pb::CaseStatus::Open),
                ],
                reason: "HR and case management feed".into(),
            },
            &world.vault(),
        ))
        .await
        .expect("organization");
}

async fn next_check_sees_changes_on_both_replicas(postgres: bool) {
    let world = World::start(postgres).await;
    organization(&world).await;
    let admin = world.admin("root");
    for at in [world.a, world.b] {
        let d = check(&world, at, read("staff/alice", "s-1")).await;
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.determining_policies, ["case-read-casework"]);
        assert!(d.obligations.expect("obligations").fields.contains(&"identity".to_string()));
        assert!(!check(&world, at, read("staff/bob", "s-1")).await.allowed, "bob has no case");
    }

    // Close the case on replica B: the next check on A (and on B) is denied, with no waiting.
    let closed = case("c-1", &["s-1"], &["alice"], pb::CaseStatus::Closed);
    let events_before = world.wait_admin_events(2).await.len();
    let response = world
        .client(world.b)
        .await
        .upsert_entity(with_token(UpsertEntityRequest { entity: Some(closed.clone()), reason: "done".into() }, &admin))
        .await
        .expect("close case")
        .into_inner();
    assert!(response.changed);
    for at in [world.a, world.b] {
        let d = check(&world, at, read("staff/alice", "s-1")).await;
        assert!(!d.allowed, "the closed case still allows on {at}: {d:?}");
        assert!(d.entity_version >= response.entity_version);
    }
    // The ledger holds the change: who, what, the new version's hash.
    let events = world.wait_admin_events(events_before + 1).await;
    let (operation, resource, version) = events.last().expect("event").clone();
    assert_eq!((operation.as_str(), resource.as_str()), ("UpsertEntity", "cases/c-1"));
    assert_eq!(version, quis_policy::store::sha256_hex(&closed.encode_to_vec()));

    // The same upsert again changes nothing and records nothing.
    let again = world
        .client(world.a)
        .await
        .upsert_entity(with_token(UpsertEntityRequest { entity: Some(closed), reason: String::new() }, &admin))
        .await
        .expect("idempotent")
        .into_inner();
    assert!(!again.changed);

    // Suspending alice's staff record denies her on the next check, even with an open case.
    let client = world.client(world.a).await;
    client
        .clone()
        .upsert_entity(with_token(
            UpsertEntityRequest {
                entity: Some(case("c-1", &["s-1"], &["alice"], pb::CaseStatus::Open)),
                reason: String::new(),
            },
            &admin,
        ))
        .await
        .expect("reopen");
    assert!(check(&world, world.b, read("staff/alice", "s-1")).await.allowed);
    client
        .clone()
        .upsert_entity(with_token(
            UpsertEntityRequest {
                entity: Some(staff("alice", "north", pb::StaffStatus::Suspended)),
                reason: "inquiry".into(),
            },
            &admin,
        ))
        .await
        .expect("suspend");
    let d = check(&world, world.b, read("staff/alice", "s-1")).await;
    assert!(!d.allowed);
    assert_eq!(d.determining_policies, ["inactive-staff"]);
    assert_eq!(d.public_reason, "your account is not active");
}

#[tokio::test]
async fn next_check_sees_changes_on_both_replicas_sqlite() {
    next_check_sees_changes_on_both_replicas(false).await;
}

#[tokio::test]
async fn next_check_sees_changes_on_both_replicas_postgres() {
    next_check_sees_changes_on_both_replicas(true).await;
}

async fn two_admins_approve_a_policy_set(postgres: bool) {
    let world = World::start(postgres).await;
    organization(&world).await;
    let (alice_admin, bob_admin) = (world.admin("admin-a"), world.admin("admin-b"));
    let before = check(&world, world.a, read("staff/alice", "s-1")).await;
    assert!(before.allowed);

    // A pack without the casework permit.
    let text = quis_policy_engine::policy::DEFAULT_POLICIES;
    let start = text.find("@id(\"case-read-casework\")").expect("casework permit");
    let end = start + text[start..].find("};").expect("end") + 2;
    let stricter = format!("{}{}", &text[..start], &text[end..]);
    let proposed = world
        .client(world.a)
        .await
        .create_policy_set_version(with_token(
            CreatePolicySetVersionRequest { text: stricter, description: "casework reads need review".into() },
            &alice_admin,
        ))
        .await
        .expect("propose")
        .into_inner()
        .version
        .expect("version");
    assert_eq!(proposed.state, pb::PolicySetVersionState::Proposed as i32);
    // Proposed is not in force.
    assert!(check(&world, world.b, read("staff/alice", "s-1")).await.allowed);

    let own = world
        .client(world.b)
        .await
        .approve_policy_set_version(with_token(
            ApprovePolicySetVersionRequest { name: proposed.name.clone(), reason: String::new() },
            &alice_admin,
        ))
        .await
        .expect_err("self-approval");
    assert_refused(&own, Code::PermissionDenied, "SELF_APPROVAL_FORBIDDEN");

    let approved = world
        .client(world.b)
        .await
        .approve_policy_set_version(with_token(
            ApprovePolicySetVersionRequest { name: proposed.name.clone(), reason: "reviewed".into() },
            &bob_admin,
        ))
        .await
        .expect("approve")
        .into_inner()
        .version
        .expect("version");
    assert_eq!(approved.approved_by, "admin-b");
    for at in [world.a, world.b] {
        let d = check(&world, at, read("staff/alice", "s-1")).await;
        assert!(!d.allowed, "the new version is not in force on {at}");
        assert_eq!(d.policy_version, proposed.hash);
    }
    let events = world.wait_admin_events(4).await;
    let approval = events.iter().find(|e| e.0 == "ApprovePolicySetVersion" && e.1 == proposed.name).expect("approval");
    assert_eq!(approval.2, proposed.hash);
    assert!(events.iter().any(|e| e.0 == "CreatePolicySetVersion" && e.1 == proposed.name));

    // Approving twice is refused.
    let twice = world
        .client(world.a)
        .await
        .approve_policy_set_version(with_token(
            ApprovePolicySetVersionRequest { name: proposed.name.clone(), reason: String::new() },
            &world.admin("admin-c"),
        ))
        .await
        .expect_err("twice");
    assert_refused(&twice, Code::FailedPrecondition, "NOT_PROPOSED");
}

#[tokio::test]
async fn two_admins_approve_a_policy_set_sqlite() {
    two_admins_approve_a_policy_set(false).await;
}

#[tokio::test]
async fn two_admins_approve_a_policy_set_postgres() {
    two_admins_approve_a_policy_set(true).await;
}

async fn a_change_the_ledger_cannot_record_is_refused(postgres: bool) {
    let world = World::start(postgres).await;
    organization(&world).await;
    // A third replica on the same store whose ledger is unreachable.
    let mut config = (*world.config).clone();
    let (dead, dead_addr) = listener().await;
    drop(dead);
    config.policy.ledger_url = Some(format!("http://{dead_addr}"));
    let cut_off = replica(&Arc::new(config), &world.stop).await;
    let admin = world.admin("root");
    let refused = world
        .client(cut_off)
        .await
        .upsert_entity(with_token(
            UpsertEntityRequest {
                entity: Some(case("c-1", &["s-1"], &["alice"], pb::CaseStatus::Closed)),
                reason: String::new(),
            },
            &admin,
        ))
        .await
        .expect_err("no ledger, no change");
    assert_refused(&refused, Code::Unavailable, "LEDGER_UNAVAILABLE");
    let proposal = world
        .client(cut_off)
        .await
        .create_policy_set_version(with_token(
            CreatePolicySetVersionRequest {
                text: quis_policy_engine::policy::DEFAULT_POLICIES.into(),
                description: "copy".into(),
            },
            &admin,
        ))
        .await
        .expect_err("no ledger, no proposal");
    assert_refused(&proposal, Code::Unavailable, "LEDGER_UNAVAILABLE");
    // Nothing was stored: every replica still allows, and the stored case is open.
    for at in [world.a, world.b, cut_off] {
        assert!(check(&world, at, read("staff/alice", "s-1")).await.allowed);
    }
    let cases = world
        .client(world.a)
        .await
        .list_entities(with_token(
            ListEntitiesRequest { r#type: pb::EntityType::Case as i32, page_size: 10, page_token: String::new() },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner()
        .entities;
    assert_eq!(cases, vec![case("c-1", &["s-1"], &["alice"], pb::CaseStatus::Open)]);
    let listed = world
        .client(world.a)
        .await
        .list_policy_set_versions(with_token(pb::ListPolicySetVersionsRequest::default(), &admin))
        .await
        .expect("versions")
        .into_inner()
        .versions;
    assert_eq!(listed.len(), 1, "only the built-in pack");
}

#[tokio::test]
async fn a_change_the_ledger_cannot_record_is_refused_sqlite() {
    a_change_the_ledger_cannot_record_is_refused(false).await;
}

#[tokio::test]
async fn a_change_the_ledger_cannot_record_is_refused_postgres() {
    a_change_the_ledger_cannot_record_is_refused(true).await;
}

#[tokio::test]
async fn administrators_cannot_administer_themselves() {
    let world = World::start(false).await;
    organization(&world).await;
    let root = world.admin("root");
    let client = world.client(world.a).await;
    let grant = Entity {
        kind: Some(E::Grant(pb::Grant {
            name: "grants/g-1".into(),
            staff: "staff/root".into(),
            subject: "subjects/s-1".into(),
            kind: pb::GrantKind::Temporary as i32,
            purposes: vec![pb::Purpose::Audit as i32],
            justification: "spot check".into(),
            start_time: Some(prost_types::Timestamp { seconds: now(), nanos: 0 }),
            expire_time: Some(prost_types::Timestamp { seconds: now() + 3600, nanos: 0 }),
            granted_by: String::new(),
        })),
    };
    let conflict = Entity {
        kind: Some(E::Conflict(pb::Conflict {
            name: "conflicts/k-1".into(),
            staff: "staff/root".into(),
            subject: "subjects/s-1".into(),
        })),
    };
    for (what, entity) in [
        ("grant to self", grant),
        ("assign self to a case", case("c-2", &["s-1"], &["root"], pb::CaseStatus::Open)),
        ("change own staff record", staff("root", "north", pb::StaffStatus::Active)),
    ] {
        let refused = client
            .clone()
            .upsert_entity(with_token(UpsertEntityRequest { entity: Some(entity), reason: String::new() }, &root))
            .await
            .expect_err(what);
        assert_refused(&refused, Code::PermissionDenied, "SELF_ADMINISTRATION_FORBIDDEN");
    }
    // Another administrator declares root's conflict; root may not clear it.
    client
        .clone()
        .upsert_entity(with_token(
            UpsertEntityRequest { entity: Some(conflict), reason: String::new() },
            &world.admin("other"),
        ))
        .await
        .expect("declared by another admin");
    let refused = client
        .clone()
        .delete_entity(with_token(DeleteEntityRequest { name: "conflicts/k-1".into(), reason: String::new() }, &root))
        .await
        .expect_err("clear own conflict");
    assert_refused(&refused, Code::PermissionDenied, "SELF_ADMINISTRATION_FORBIDDEN");
    // A caseworker administers nothing, and asks only about herself.
    let alice = world.token("alice", PrincipalKind::Staff, &[Role::Caseworker]);
    let refused = client
        .clone()
        .upsert_entity(with_token(UpsertEntityRequest { entity: Some(subject("s-2")), reason: String::new() }, &alice))
        .await
        .expect_err("caseworker");
    assert_refused(&refused, Code::PermissionDenied, "NOT_AN_ADMIN");
    let refused = client.clone().check(with_token(read("staff/bob", "s-1"), &alice)).await.expect_err("about bob");
    assert_refused(&refused, Code::PermissionDenied, "NOT_A_SERVICE");
    let own = client.clone().check(with_token(read("", "s-1"), &alice)).await.expect("about herself").into_inner();
    assert!(own.allowed);
    assert!(own.full_reason.is_empty(), "the full reason is for the enforcing service only");
}

#[track_caller]
fn assert_field(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_error_details();
    let fields: Vec<_> =
        bad.bad_request().map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect()).unwrap_or_default();
    assert!(fields.iter().any(|f| f.starts_with(field)), "{field} not in {fields:?}");
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let world = World::start(false).await;
    let root = world.admin("root");
    let client = world.client(world.a).await;
    let upsert = |entity: Entity| UpsertEntityRequest { entity: Some(entity), reason: String::new() };
    let cases: Vec<(UpsertEntityRequest, &str)> = vec![
        (upsert(Entity { kind: None }), "entity.kind"),
        (upsert(staff("Alice_1", "north", pb::StaffStatus::Active)), "entity.staff.name"),
        (upsert(staff("alice", "north", pb::StaffStatus::Unspecified)), "entity.staff.status"),
        (upsert(case("c-9", &[], &["bob"], pb::CaseStatus::Open)), "entity.case.subjects"),
    ];
    for (request, field) in cases {
        let status = client.clone().upsert_entity(with_token(request, &root)).await.expect_err(field);
        assert_field(&status, field);
    }
    let status = client
        .clone()
        .batch_upsert_entities(with_token(
            BatchUpsertEntitiesRequest { entities: vec![subject("s-1"), subject("s-1")], reason: String::new() },
            &root,
        ))
        .await
        .expect_err("duplicate");
    assert_field(&status, "entities[1]");
    let status = client
        .clone()
        .list_entities(with_token(ListEntitiesRequest { r#type: 42, ..Default::default() }, &root))
        .await
        .expect_err("unknown type");
    assert_field(&status, "type");
    let status = client
        .clone()
        .delete_entity(with_token(DeleteEntityRequest { name: "people/x".into(), reason: String::new() }, &root))
        .await
        .expect_err("unknown collection");
    assert_field(&status, "name");

    // Policy sets: oversized, and invalid with the policy and position named.
    let huge = "// padding\n".repeat(30_000);
    let status = client
        .clone()
        .validate_policy_set(with_token(ValidatePolicySetRequest { text: huge }, &root))
        .await
        .expect_err("oversized");
    assert_field(&status, "text");
    let broken = "@id(\"p1\")\npermit (principal, action, resource) when { resource.no_such_attribute };";
    let status = client
        .clone()
        .validate_policy_set(with_token(ValidatePolicySetRequest { text: broken.into() }, &root))
        .await
        .expect_err("invalid");
    assert_field(&status, "text[policy p1");

    // Checks: wrong context types and malformed names, alone and in a batch.
    let vault = world.vault();
    let mut bad_purpose = read("staff/alice", "s-1");
    bad_purpose.context.as_mut().expect("context").purpose = 99;
    assert_field(&client.clone().check(with_token(bad_purpose, &vault)).await.expect_err("purpose"), "context.purpose");
    let mut bad_address = read("staff/alice", "s-1");
    bad_address.context.as_mut().expect("context").source_address = "not-an-address".into();
    assert_field(
        &client.clone().check(with_token(bad_address, &vault)).await.expect_err("address"),
        "context.source_address",
    );
    let mut bad_time = read("staff/alice", "s-1");
    bad_time.context.as_mut().expect("context").time = Some(prost_types::Timestamp { seconds: 1, nanos: 0 });
    assert_field(&client.clone().check(with_token(bad_time, &vault)).await.expect_err("time"), "context.time");
    let mut no_action = read("staff/alice", "s-1");
    no_action.action = 0;
    assert_field(&client.clone().check(with_token(no_action, &vault)).await.expect_err("action"), "action");
    let status = client
        .clone()
        .batch_check(with_token(
            BatchCheckRequest { checks: vec![read("staff/alice", "s-1"), read("staff/alice", "Not An Id")] },
            &vault,
        ))
        .await
        .expect_err("batch");
    assert_field(&status, "checks[1].resource");
    // A check without a purpose is a question with an answer (deny), not an error.
    let mut no_purpose = read("staff/alice", "s-1");
    no_purpose.context = None;
    let d = client.clone().check(with_token(no_purpose, &vault)).await.expect("decided").into_inner();
    assert!(!d.allowed);
}

#[tokio::test]
async fn sentinel_follows_the_entity_change_feed_but_cannot_change_entities() {
    let world = World::start(false).await;
    organization(&world).await;
    let mut client = world.client(world.b).await;
    let admin = world.admin("root");
    client
        .delete_entity(with_token(
            DeleteEntityRequest { name: "cases/c-1".into(), reason: "closed and purged".into() },
            &admin,
        ))
        .await
        .expect("delete");
    let sentinel = world.token("sentinel", PrincipalKind::Service, &[Role::Service]);

    // The whole feed, a page of two positions at a time: every write in order, the deletion by name.
    let (mut after, mut seen) = (0, Vec::new());
    loop {
        let page = client
            .list_entity_changes(with_token(
                pb::ListEntityChangesRequest { after_version: after, page_size: 2 },
                &sentinel,
            ))
            .await
            .expect("changes")
            .into_inner();
        assert!(page.next_after_version > after || !page.more, "the feed moves on");
        after = page.next_after_version;
        seen.extend(page.changes.into_iter().map(|c| match c.entity.and_then(|e| e.kind) {
            Some(E::Staff(s)) => s.name,
            Some(E::Team(t)) => t.name,
            Some(E::Subject(s)) => s.name,
            Some(E::Case(c)) => c.name,
            _ => format!("deleted {}", c.deleted),
        }));
        if !page.more {
            break;
        }
    }
    let expected = ["teams/north", "staff/alice", "staff/bob", "subjects/s-1", "cases/c-1", "deleted cases/c-1"];
    assert_eq!(seen.iter().filter(|n| expected.contains(&n.as_str())).count(), expected.len(), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("deleted cases/c-1"));
    client
        .list_entities(with_token(
            ListEntitiesRequest { r#type: pb::EntityType::Staff as i32, ..Default::default() },
            &sentinel,
        ))
        .await
        .expect("sentinel lists entities");

    // Read-only: no write of any kind.
    let err = client
        .upsert_entity(with_token(
            UpsertEntityRequest { entity: Some(subject("s-2")), reason: String::new() },
            &sentinel,
        ))
        .await
        .expect_err("sentinel may not write");
    assert_refused(&err, Code::PermissionDenied, "NOT_AN_ADMIN");
    let err = client
        .batch_upsert_entities(with_token(
            BatchUpsertEntitiesRequest { entities: vec![subject("s-3")], reason: String::new() },
            &sentinel,
        ))
        .await
        .expect_err("sentinel may not write");
    assert_refused(&err, Code::PermissionDenied, "NOT_AN_ADMIN");
    let err = client
        .delete_entity(with_token(DeleteEntityRequest { name: "subjects/s-1".into(), reason: "x".into() }, &sentinel))
        .await
        .expect_err("sentinel may not delete");
    assert_refused(&err, Code::PermissionDenied, "NOT_AN_ADMIN");
    // Staff read no feed: it is for services.
    let err = client
        .list_entity_changes(with_token(pb::ListEntityChangesRequest::default(), &admin))
        .await
        .expect_err("not a service");
    assert_refused(&err, Code::PermissionDenied, "NOT_A_SERVICE");
}
