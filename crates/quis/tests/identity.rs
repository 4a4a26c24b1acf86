//! Revocation: an administrator revokes a token id or suspends a principal
//! through the gateway, and every service (the gateway and each backend, each
//! with its own verifier and cache) refuses it within seconds.
mod support;

use std::time::Duration;

use quis_auth::Role;
use quis_proto::{
    echo::{EchoRequest, echo_service_client::EchoServiceClient},
    identity::{
        ListRevocationsRequest, ReinstatePrincipalRequest, RevokeTokenRequest, SuspendPrincipalRequest,
        identity_service_client::IdentityServiceClient,
    },
};
use support::*;
use tonic::Code;

async fn echo_at(addr: std::net::SocketAddr, token: &str) -> Result<(), tonic::Status> {
    EchoServiceClient::new(channel(addr).await).echo(with_token(EchoRequest::default(), token)).await.map(|_| ())
}

#[tokio::test]
async fn a_revoked_token_is_refused_everywhere_within_five_seconds() {
    let suite = Suite::start(|_| {}).await;
    let admin = suite.token("root-admin", &[Role::Admin]);
    let (alice, alice_jti) = suite.token_with_id("alice", &[Role::Caseworker]);
    let other_alice = suite.token("alice", &[Role::Caseworker]);
    // Warm every verifier's cache first: revocation must beat the cache.
    echo_at(suite.gateway, &alice).await.expect("gateway");
    echo_at(suite.echo, &alice).await.expect("backend");

    let mut identity = IdentityServiceClient::new(suite.channel().await);
    let revoked = identity
        .revoke_token(with_token(
            RevokeTokenRequest { token_id: alice_jti.clone(), expire_time: None, reason: "laptop stolen".into() },
            &admin,
        ))
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.revocation.expect("revocation").revoked_by, "root-admin");

    for (name, addr) in [("gateway", suite.gateway), ("echo backend", suite.echo), ("identity backend", suite.identity)]
    {
        let refused = eventually(
            Duration::from_secs(5),
            async || matches!(echo_or_list(addr, &alice, name).await, Err(s) if reason(&s) == "TOKEN_REVOKED"),
        )
        .await;
        assert!(refused, "{name} still accepts a revoked token after 5 s");
    }
    // Another token of the same principal is unaffected.
    echo_at(suite.gateway, &other_alice).await.expect("other token");

    let listed = identity
        .list_revocations(with_token(ListRevocationsRequest::default(), &admin))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.revocations.len(), 1);
}

/// Calls something the principal may call on `addr`: echo, or (on the identity backend) a list that reveals the auth outcome.
async fn echo_or_list(addr: std::net::SocketAddr, token: &str, name: &str) -> Result<(), tonic::Status> {
    if name == "identity backend" {
        IdentityServiceClient::new(channel(addr).await)
            .list_revocations(with_token(ListRevocationsRequest::default(), token))
            .await
            .map(|_| ())
    } else {
        echo_at(addr, token).await
    }
}

#[tokio::test]
async fn suspension_applies_to_every_token_until_reinstated() {
    let suite = Suite::start(|_| {}).await;
    let admin = suite.token("root-admin", &[Role::Admin]);
    let bob = suite.token("bob", &[Role::Caseworker]);
    echo_at(suite.gateway, &bob).await.expect("before");
    let mut identity = IdentityServiceClient::new(suite.channel().await);
    identity
        .suspend_principal(with_token(
            SuspendPrincipalRequest { principal: "bob".into(), reason: "left the team".into() },
            &admin,
        ))
        .await
        .expect("suspend");
    let refused = eventually(Duration::from_secs(5), async || {
        matches!(echo_at(suite.echo, &bob).await, Err(s) if reason(&s) == "PRINCIPAL_SUSPENDED")
            && matches!(echo_at(suite.gateway, &suite.token("bob", &[Role::Caseworker])).await, Err(s) if reason(&s) == "PRINCIPAL_SUSPENDED")
    })
    .await;
    assert!(refused, "a suspended principal is refused, with fresh tokens too");

    identity
        .reinstate_principal(with_token(
            ReinstatePrincipalRequest { principal: "bob".into(), reason: "back".into() },
            &admin,
        ))
        .await
        .expect("reinstate");
    assert!(eventually(Duration::from_secs(5), async || echo_at(suite.gateway, &bob).await.is_ok()).await);
    let err = identity
        .reinstate_principal(with_token(
            ReinstatePrincipalRequest { principal: "bob".into(), reason: "again".into() },
            &admin,
        ))
        .await
        .expect_err("not suspended");
    assert_refused(&err, Code::NotFound, "NOT_SUSPENDED");
}

#[tokio::test]
async fn administrators_cannot_act_on_themselves_and_others_cannot_administer() {
    let suite = Suite::start(|_| {}).await;
    let admin = suite.token("root-admin", &[Role::Admin]);
    let mut identity = IdentityServiceClient::new(suite.channel().await);
    let err = identity
        .suspend_principal(with_token(
            SuspendPrincipalRequest { principal: "root-admin".into(), reason: "x".into() },
            &admin,
        ))
        .await
        .expect_err("self");
    assert_refused(&err, Code::PermissionDenied, "SELF_ADMINISTRATION_FORBIDDEN");
    let err = identity
        .reinstate_principal(with_token(
            ReinstatePrincipalRequest { principal: "root-admin".into(), reason: "x".into() },
            &admin,
        ))
        .await
        .expect_err("self");
    assert_refused(&err, Code::PermissionDenied, "SELF_ADMINISTRATION_FORBIDDEN");

    let caseworker = suite.token("alice", &[Role::Caseworker]);
    let err = identity
        .suspend_principal(with_token(
            SuspendPrincipalRequest { principal: "bob".into(), reason: "x".into() },
            &caseworker,
        ))
        .await
        .expect_err("not an admin");
    assert_refused(&err, Code::PermissionDenied, "ROLE_REQUIRED");

    let err = identity
        .suspend_principal(with_token(
            SuspendPrincipalRequest { principal: "Bob Smith".into(), reason: String::new() },
            &admin,
        ))
        .await
        .expect_err("invalid");
    assert_refused(&err, Code::InvalidArgument, "INVALID_ARGUMENT");
    use tonic_types::StatusExt;
    let fields: Vec<_> = err
        .get_error_details()
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .iter()
        .map(|v| v.field.clone())
        .collect();
    assert_eq!(fields, vec!["principal", "reason"]);
}

#[tokio::test]
async fn an_unreachable_revocation_list_fails_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config.auth.revocation_max_staleness_secs = 1;
    config.auth.revocation_poll_ms = 100;
    let store = dir.path().join("revocations.db");
    config.auth.revocation_store = Some(format!("sqlite://{}?mode=rwc", store.display()));
    let config = std::sync::Arc::new(config);
    let stop = tokio_util::sync::CancellationToken::new();
    let verifier = quis_auth::TokenVerifier::from_config(&config, stop.clone()).await.expect("verifier");
    let token = caseworker_token(dir.path(), &config);
    verifier.verify(&token).expect("fresh list");
    // Make the store unreadable: the table disappears under the services' feet.
    let db = quis_core::db::Db::connect(&format!("sqlite://{}", store.display())).await.expect("db");
    let quis_core::db::Db::Sqlite(pool) = db else { panic!("a SQLite store") };
    sqlx::query("DROP TABLE revocation_events").execute(&pool).await.expect("drop");
    let stale = eventually(Duration::from_secs(5), async || {
        matches!(verifier.verify(&token), Err(quis_auth::AuthError::RevocationListStale))
    })
    .await;
    assert!(stale, "tokens must be refused once the revocation list is stale");
    stop.cancel();
}
