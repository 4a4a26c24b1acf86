//! Verification with each accepted algorithm from a JWKS file or URL, and the
//! refusals that are about keys and claims rather than transport.
use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use quis_auth::{
    AuthError, TokenVerifier,
    jwks::KeySet,
    revocation::{RevocationList, RevocationStore},
};
use serde_json::json;

const ISS: &str = "https://idp.example";
const AUD: &str = "quis";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

fn claims(sub: &str, kind: &str, roles: &[&str], lifetime: i64) -> serde_json::Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "kind": kind, "roles": roles, "team": "north",
           "jti": uuid::Uuid::new_v4().to_string(), "iat": now(), "nbf": now(), "exp": now() + lifetime})
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

struct Keys {
    jwks: serde_json::Value,
    ec: EncodingKey,
    rsa: EncodingKey,
}

fn keys() -> Keys {
    use p256::{elliptic_curve::sec1::ToEncodedPoint, pkcs8::EncodePrivateKey};
    use rsa::traits::PublicKeyParts;
    let ec = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let point = ec.public_key().to_encoded_point(false);
    let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa");
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
         "x": b64(point.x().expect("x")), "y": b64(point.y().expect("y"))},
        {"kty": "RSA", "kid": "rsa-1", "alg": "RS256",
         "n": b64(&rsa.n().to_bytes_be()), "e": b64(&rsa.e().to_bytes_be())},
    ]});
    let ec_pem = ec.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).expect("pem");
    let rsa_pem = rsa.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("pem");
    Keys {
        jwks,
        ec: EncodingKey::from_ec_pem(ec_pem.as_bytes()).expect("ec key"),
        rsa: EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).expect("rsa key"),
    }
}

async fn fresh_revocations(dir: &std::path::Path) -> Arc<RevocationList> {
    let store =
        RevocationStore::connect(&format!("sqlite://{}?mode=rwc", dir.join("r.db").display())).await.expect("store");
    let list = Arc::new(RevocationList::new(Duration::from_secs(30)));
    list.refresh(&store).await.expect("refresh");
    list
}

#[tokio::test]
async fn es256_and_rs256_tokens_verify_and_keys_are_bound_to_their_algorithm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys();
    let set = KeySet::from_json(&serde_json::to_vec(&k.jwks).expect("json")).expect("jwks");
    let verifier = TokenVerifier::new(set, ISS, AUD, 30, 86_400, 1000, fresh_revocations(dir.path()).await);

    let es = sign(Algorithm::ES256, "ec-1", &k.ec, &claims("alice", "staff", &["caseworker", "team_lead"], 600));
    let p = verifier.verify(&es).expect("ES256");
    assert_eq!((p.id.as_str(), p.team.as_deref()), ("alice", Some("north")));
    assert!(p.has_role(quis_auth::Role::TeamLead));
    let rs = sign(Algorithm::RS256, "rsa-1", &k.rsa, &claims("ingest-svc", "service", &["service", "ingest"], 600));
    assert!(verifier.verify(&rs).expect("RS256").is_service());

    // A token naming the RSA key but signed ES256 is refused before any signature check.
    let confused = sign(Algorithm::ES256, "rsa-1", &k.ec, &claims("alice", "staff", &[], 600));
    assert!(matches!(verifier.verify(&confused), Err(AuthError::AlgorithmNotAllowed(_))));
    // PS256 and ES384 are not on the list at all.
    let ps = sign(Algorithm::PS256, "rsa-1", &k.rsa, &claims("alice", "staff", &[], 600));
    assert!(matches!(verifier.verify(&ps), Err(AuthError::AlgorithmNotAllowed(_))));

    // Claims the design forbids.
    let too_long = sign(Algorithm::ES256, "ec-1", &k.ec, &claims("alice", "staff", &[], 30 * 86_400));
    assert!(matches!(verifier.verify(&too_long), Err(AuthError::InvalidClaims(_))));
    let staff_as_service = sign(Algorithm::ES256, "ec-1", &k.ec, &claims("alice", "staff", &["service"], 600));
    assert!(matches!(verifier.verify(&staff_as_service), Err(AuthError::InvalidClaims(_))));
    let bad_sub = sign(Algorithm::ES256, "ec-1", &k.ec, &claims("Alice Smith", "staff", &[], 600));
    assert!(matches!(verifier.verify(&bad_sub), Err(AuthError::InvalidClaims(_))));
    let mut no_jti = claims("alice", "staff", &[], 600);
    no_jti.as_object_mut().expect("object").remove("jti");
    assert!(matches!(
        verifier.verify(&sign(Algorithm::ES256, "ec-1", &k.ec, &no_jti)),
        Err(AuthError::InvalidClaims(_))
    ));
}

#[test]
fn jwks_documents_with_unsafe_or_ambiguous_keys_are_refused() {
    let hmac = json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0", "alg": "HS256"}]});
    assert!(KeySet::from_json(&serde_json::to_vec(&hmac).expect("json")).is_err());
    let k = keys();
    let mut dup = k.jwks.clone();
    dup["keys"][1]["kid"] = "ec-1".into();
    assert!(KeySet::from_json(&serde_json::to_vec(&dup).expect("json")).expect_err("dup").contains("twice"));
    let mut no_kid = k.jwks.clone();
    no_kid["keys"][0].as_object_mut().expect("object").remove("kid");
    assert!(KeySet::from_json(&serde_json::to_vec(&no_kid).expect("json")).is_err());
    let mut wrong_alg = k.jwks;
    wrong_alg["keys"][0]["alg"] = "RS256".into();
    assert!(KeySet::from_json(&serde_json::to_vec(&wrong_alg).expect("json")).is_err());
    assert!(KeySet::from_json(br#"{"keys": []}"#).is_err());
}

#[tokio::test]
async fn keys_load_from_a_jwks_url() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let k = keys();
    let body = serde_json::to_string(&k.jwks).expect("json");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = tcp.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(reply.as_bytes()).await;
        }
    });
    let mut config = quis_core::QuisConfig { data_dir: dir.path().into(), ..Default::default() };
    config.auth.issuer = ISS.into();
    config.auth.audience = AUD.into();
    config.auth.jwks_url = Some(format!("http://127.0.0.1:{}/jwks.json", addr.port()));
    let stop = tokio_util::sync::CancellationToken::new();
    let verifier = TokenVerifier::from_config(&config, stop.clone()).await.expect("verifier from URL");
    let token = sign(Algorithm::ES256, "ec-1", &k.ec, &claims("alice", "staff", &["caseworker"], 600));
    assert_eq!(verifier.verify(&token).expect("verified").id, "alice");

    // Plain HTTP is refused beyond loopback.
    config.auth.jwks_url = Some("http://idp.example/jwks.json".into());
    assert!(TokenVerifier::from_config(&config, stop.clone()).await.is_err());
    stop.cancel();
}
