//! The deployment manifests under `deploy/`, checked without Docker or a cluster.
//!
//! Every file in `deploy/` is parsed (YAML documents, the Dockerfile, TOML), and
//! every Quis container's configuration — image `ENV`, then its own environment,
//! then the `--config` file it is given — is loaded through
//! [`QuisConfig::load`], exactly as the process would load it. From those loaded
//! configurations the test checks that ports, probes, upstream URLs, data
//! directories and network policies agree with each other.
//!
//! The container environments are never put into this process's environment
//! (tests run in parallel): they become a figment provider that reads a list of
//! `NAME=value` pairs with the semantics of `Env::prefixed("QUIS_").split("__")`,
//! handed to `QuisConfig::load` as its `overrides`.
//!
//! Run: `cargo test -p quis-e2e --test deploy_manifests`.
#![forbid(unsafe_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Format, Toml},
    value::{Dict, Map, Value},
};
use quis_core::config::{ENV_PREFIX, QuisConfig};
use serde::Deserialize;

/// The services that run as containers of their own. A new service is added
/// HERE, and the test then demands it everywhere: a compose service, a k8s
/// Deployment and Service, listen addresses in every configuration, the
/// Dockerfile's EXPOSE and the network policies.
const SERVICES: &[&str] = &["gateway", "identity", "ledger", "witness", "policy", "vault", "sentinel", "echo"];

/// The ledger: one sequencer per log, and a third listener, its tlog-tiles HTTP
/// (`ledger.http_listen`), which only the gateway reads.
const LEDGER: &str = "ledger";
/// The witness: run by another party in production. Plain HTTP on
/// `services.witness.listen`, no tokens; its own configuration, key, store and
/// network; reachable by the ledger only; never routed by the gateway.
const WITNESS: &str = "witness";
/// Services whose state one process writes: exactly one replica, `Recreate`, and a
/// store that survives a restart (a database, or SQLite on a persistent volume).
const SINGLETONS: &[&str] = &[LEDGER, WITNESS, SENTINEL];
/// Sentinel: one consumer of the ledger per store (its cursor and alerts are written by one process).
const SENTINEL: &str = "sentinel";
/// The services the gateway does not route to; it routes to every other one.
const NOT_ROUTED: &[&str] = &[PUBLIC_SERVICE, WITNESS];
/// Services call it on the ledger directly; the gateway must never route it.
const APPEND_EVENTS: &str = "/quis.ledger.v1.LedgerService/AppendEvents";

/// The one service reachable from outside (compose `ports:`, open NetworkPolicy).
const PUBLIC_SERVICE: &str = "gateway";

/// The only service that may receive the token signing key.
const SIGNING_KEY_HOLDER: &str = "identity";
/// Name of the token signing key in the Secret `quis-keys` and under `<data_dir>/keys/`.
const SIGNING_KEY: &str = "token-signing.pem";
/// The Secret the operator creates (deploy/README.md); never committed.
const KEYS_SECRET: &str = "quis-keys";
/// The ledger's key files (`ledger.log_key`, `ledger.details_key`); only the ledger gets it.
const LEDGER_KEYS_SECRET: &str = "quis-ledger-keys";
/// The witness's key file (`witness.key`); only the witness gets it.
const WITNESS_KEY_SECRET: &str = "quis-witness-key";
/// The vault's key-encryption keys and organization secret; only the vault gets it.
const VAULT_KEYS_SECRET: &str = "quis-vault-keys";

/// Where `quis init --data-dir DIR` writes the JWKS, relative to DIR.
const INIT_JWKS: &str = "keys/jwks.json";

/// Stand-in for `valueFrom` environment values (Secrets are not in the repository).
const VALUE_FROM_PLACEHOLDER: &str = "value-from-a-secret-or-config-map";

// ------------------------------------------------------------------ helpers --

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo_root()).unwrap_or(path).display().to_string()
}

/// Collects every problem, so one run reports all of them.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.0.push(message());
        }
    }

    fn push(&mut self, message: String) {
        self.0.push(message);
    }

    fn finish(self, what: &str) {
        assert!(self.0.is_empty(), "{what}: {} problem(s):\n  - {}", self.0.len(), self.0.join("\n  - "));
    }
}

/// Every file under `deploy/`, recursively, sorted.
fn deploy_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() { walk(&path, out) } else { out.push(path) }
        }
    }
    let mut files = Vec::new();
    walk(&deploy_dir(), &mut files);
    files.sort();
    files
}

/// All YAML documents of a file (`---` separated), as values with `<<` merge keys applied.
fn yaml_documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .enumerate()
        .filter_map(|(i, doc)| {
            let mut value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: YAML document {}: {e}", rel(path), i + 1));
            value.apply_merge().unwrap_or_else(|e| panic!("{}: YAML document {}: merge keys: {e}", rel(path), i + 1));
            (!value.is_null()).then_some(value)
        })
        .collect()
}

fn from_yaml<T: for<'de> Deserialize<'de>>(value: &serde_yaml::Value, what: &str) -> T {
    serde_yaml::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"))
}

// -------------------------------------------------- environment → figment --

/// One environment variable as figment's `Env::prefixed("QUIS_").split("__")` reads it.
/// Returns `Ok(None)` for variables without the prefix (figment ignores them) and an
/// error for names figment would silently drop.
fn env_key(name: &str) -> Result<Option<String>, String> {
    // `Env::iter`: the name is trimmed; `prefixed` matches the prefix case-insensitively
    // (keys are `UncasedStr`) and strips it; `split("__")` turns `__` into `.`; keys with
    // an empty segment are skipped; keys are lowercased.
    let trimmed = name.trim();
    let Some(head) = trimmed.get(..ENV_PREFIX.len()) else {
        return Ok(None);
    };
    if !head.eq_ignore_ascii_case(ENV_PREFIX) {
        return Ok(None);
    }
    let key = trimmed[ENV_PREFIX.len()..].replace("__", ".");
    let key = key.trim();
    if key.split('.').any(str::is_empty) {
        return Err(format!("`{name}`: figment ignores it (empty key segment); remove or fix it"));
    }
    Ok(Some(key.to_ascii_lowercase()))
}

/// One `QUIS_*` variable as a figment provider: the value is parsed like figment's
/// `Env` does (`"[\"a\"]"` is an array, `"8"` an integer, ...) and nested under its key.
struct EnvVarProvider {
    origin: String,
    name: String,
    key: String,
    value: String,
}

impl Provider for EnvVarProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{}` in {}", self.name, self.origin))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let value: Value = self.value.parse().expect("parsing an env value is infallible");
        let dict = figment::util::nest(&self.key, value).into_dict().expect("a non-empty key nests into a dict");
        Ok(Profile::Default.collect(dict))
    }
}

/// The figment that `QuisConfig::load` merges last: the given environment, in order
/// (a later variable wins, as in a container runtime).
fn env_figment(origin: &str, env: &[(String, String)]) -> Result<Figment, String> {
    let mut figment = Figment::new();
    for (name, value) in env {
        if let Some(key) = env_key(name).map_err(|e| format!("{origin}: {e}"))? {
            figment = figment.merge(EnvVarProvider {
                origin: origin.to_string(),
                name: name.clone(),
                key,
                value: value.clone(),
            });
        }
    }
    Ok(figment)
}

/// Loads a container's configuration: defaults → `file` → `env`.
fn load_config(origin: &str, file: Option<&Path>, env: &[(String, String)]) -> Result<QuisConfig, String> {
    assert_no_process_quis_env();
    let overrides = env_figment(origin, env)?;
    QuisConfig::load(file, Some(overrides)).map_err(|e| {
        // Name the culprit: figment's message names the key, not always the variable.
        let cause = if QuisConfig::load(file, None).is_err() {
            "the file does not load on its own".to_string()
        } else {
            let culprits: Vec<&str> = env
                .iter()
                .filter(|(name, _)| matches!(env_key(name), Ok(Some(_))))
                .filter(|pair| {
                    env_figment(origin, std::slice::from_ref(*pair))
                        .is_ok_and(|alone| QuisConfig::load(file, Some(alone)).is_err())
                })
                .map(|(name, _)| name.as_str())
                .collect();
            format!("fails on its own: {culprits:?}")
        };
        let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{origin}: the configuration does not load: {e}\n      {cause}\n      file: {}\n      environment: {}",
            file.map_or_else(|| "(none)".to_string(), |f| f.display().to_string()),
            vars.join(" ")
        )
    })
}

/// `QuisConfig::load` also reads this process's own `QUIS_*` variables; they would
/// mix into every loaded configuration and make the results meaningless.
fn assert_no_process_quis_env() {
    let set: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.to_str().map(str::to_string))
        .filter(|k| matches!(env_key(k), Ok(Some(_)) | Err(_)))
        .collect();
    assert!(set.is_empty(), "unset {set:?} before running this test: QuisConfig::load would read them too");
}

fn is_unspecified(addr: &SocketAddr) -> bool {
    addr.ip().is_unspecified()
}

/// `scheme://[user[:pass]@]host[:port][/path][?query]` → (scheme, host, port).
fn parse_url(url: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p.parse().ok()?)),
        _ => (host_port, None),
    };
    Some((scheme.to_string(), host.to_string(), port))
}

/// The port name of a service's main listener (`services.<name>.listen`): gRPC,
/// except the witness's plain HTTP.
fn main_port_name(service: &str) -> &'static str {
    if service == WITNESS { "http" } else { "grpc" }
}

/// Every listener of a service, by port name: the main one, `admin`, and the
/// ledger's `tiles` (`ledger.http_listen`).
fn listeners(service: &str, config: &QuisConfig) -> Result<Vec<(&'static str, SocketAddr)>, String> {
    let listen = config.listen(service).map_err(|e| e.to_string())?;
    let mut out = vec![(main_port_name(service), listen.listen), ("admin", listen.admin_listen)];
    if service == LEDGER {
        out.push(("tiles", config.ledger.http_listen));
    }
    Ok(out)
}

/// The name of a verifier key `<name>+<8 hex key id>+<base64>`, if it has that shape.
fn vkey_name(vkey: &str) -> Option<&str> {
    let mut parts = vkey.splitn(3, '+');
    let (name, id, key) = (parts.next()?, parts.next()?, parts.next()?);
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    (!name.is_empty()
        && id.len() == 8
        && id.chars().all(|c| c.is_ascii_hexdigit())
        && !key.is_empty()
        && key.chars().all(base64))
    .then_some(name)
}

/// The file of a `sqlite:` store URL.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(rest.split('?').next().unwrap_or_default()))
}

/// Kubernetes' expansion of `$(NAME)` in an env value: NAME must be defined earlier in
/// the container's `env`; `$$` is a literal `$`. Returns the value and the names left unexpanded.
fn expand_k8s_refs(value: &str, defined: &[(String, String)]) -> (String, Vec<String>) {
    let (mut out, mut unresolved, mut rest) = (String::new(), Vec::new(), value);
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some((name, after)) = rest.strip_prefix("$(").and_then(|a| a.split_once(')')) {
            if let Some((_, v)) = defined.iter().rev().find(|(k, _)| k == name) {
                out.push_str(v);
            } else {
                unresolved.push(name.to_string());
                out.push_str(&format!("$({name})"));
            }
            rest = after;
            continue;
        }
        out.push('$');
        rest = &rest[1..];
    }
    out.push_str(rest);
    (out, unresolved)
}

/// Checks that a URL that `client` dials reaches `target`'s listener on `target_port`:
/// (client, target, host, port, target_port). Compose and Kubernetes resolve names differently.
type Resolve<'a> = dyn Fn(&str, &str, &str, u16, u16) -> Result<(), String> + 'a;

/// A URL of `client`'s configuration that must reach `target`'s listener `port_name`.
#[allow(clippy::too_many_arguments)]
fn check_url(
    problems: &mut Problems,
    origin: &str,
    what: &str,
    url: &str,
    scheme: &str,
    (client, target, port_name): (&str, &str, &str),
    ports: &BTreeMap<String, BTreeMap<&'static str, u16>>,
    resolve: &Resolve,
) {
    let Some((s, host, port)) = parse_url(url) else {
        problems.push(format!("{origin}: {what} {url:?} is not a URL"));
        return;
    };
    problems.check(s == scheme, || format!("{origin}: {what} {url:?}: scheme must be {scheme}"));
    let Some(port) = port else {
        problems.push(format!("{origin}: {what} {url:?}: give the port explicitly"));
        return;
    };
    let Some(target_port) = ports.get(target).and_then(|p| p.get(port_name)) else {
        return; // the target does not load: reported elsewhere
    };
    if let Err(e) = resolve(client, target, &host, port, *target_port) {
        problems.push(format!("{origin}: {what} {url:?} must reach {target} port {port_name} ({target_port}): {e}"));
    }
}

/// The ledger's place in one deployment (compose or Kubernetes), from the loaded
/// configurations: the gateway routes to every backend but the witness, keeps
/// AppendEvents internal and reads the tiles from the ledger's tiles listener; the
/// ledger submits to the witness; the witness knows the ledger's origin; verifier
/// keys (unless they come from a Secret or ConfigMap) name the right key.
fn check_ledger_wiring(
    problems: &mut Problems,
    origin: &str,
    configs: &BTreeMap<String, QuisConfig>,
    ports: &BTreeMap<String, BTreeMap<&'static str, u16>>,
    resolve: &Resolve,
) {
    let (Some(gateway), Some(ledger), Some(witness)) =
        (configs.get(PUBLIC_SERVICE), configs.get(LEDGER), configs.get(WITNESS))
    else {
        return; // a configuration that does not load is reported elsewhere
    };
    let routed: BTreeSet<&str> = gateway.gateway.upstreams.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = SERVICES.iter().copied().filter(|s| !NOT_ROUTED.contains(s)).collect();
    problems.check(routed == expected, || {
        format!("{origin}: gateway.upstreams routes {routed:?}; expected every backend but the witness: {expected:?}")
    });
    problems.check(gateway.gateway.internal_methods.iter().any(|m| m == APPEND_EVENTS), || {
        format!("{origin}: gateway.internal_methods must keep {APPEND_EVENTS} (services call the ledger directly)")
    });
    // The tiles listener speaks plain HTTP whatever tls.enabled says.
    match &gateway.gateway.tiles_upstream {
        Some(url) => check_url(
            problems,
            &format!("{origin} {PUBLIC_SERVICE}"),
            "gateway.tiles_upstream",
            url,
            "http",
            (PUBLIC_SERVICE, LEDGER, "tiles"),
            ports,
            resolve,
        ),
        None => problems.push(format!("{origin}: gateway.tiles_upstream is not set; /checkpoint and /tile/… fail")),
    }

    problems.check(!ledger.ledger.witnesses.is_empty() && ledger.ledger.witness_quorum >= 1, || {
        format!(
            "{origin} {LEDGER}: ledger.witnesses ({}) and ledger.witness_quorum ({}) must name the witness",
            ledger.ledger.witnesses.len(),
            ledger.ledger.witness_quorum
        )
    });
    for w in &ledger.ledger.witnesses {
        check_url(
            problems,
            &format!("{origin} {LEDGER}"),
            "ledger.witnesses url",
            &w.url,
            "http",
            (LEDGER, WITNESS, main_port_name(WITNESS)),
            ports,
            resolve,
        );
        if w.vkey != VALUE_FROM_PLACEHOLDER {
            problems.check(vkey_name(&w.vkey) == Some(witness.witness.name.as_str()), || {
                format!(
                    "{origin} {LEDGER}: ledger.witnesses vkey {:?} is not a verifier key of witness.name {:?}",
                    w.vkey, witness.witness.name
                )
            });
        }
    }
    match witness.witness.logs.get(&ledger.ledger.origin) {
        Some(keys) => {
            problems.check(!keys.is_empty(), || {
                format!("{origin} {WITNESS}: witness.logs[{:?}] lists no key", ledger.ledger.origin)
            });
            for key in keys.iter().filter(|k| *k != VALUE_FROM_PLACEHOLDER) {
                problems.check(vkey_name(key) == Some(ledger.ledger.origin.as_str()), || {
                    format!(
                        "{origin} {WITNESS}: witness.logs key {key:?} is not a verifier key of ledger.origin {:?}",
                        ledger.ledger.origin
                    )
                });
            }
        }
        None => problems.push(format!(
            "{origin} {WITNESS}: witness.logs has no entry for ledger.origin {:?} (has {:?}): every checkpoint is refused",
            ledger.ledger.origin,
            witness.witness.logs.keys().collect::<Vec<_>>()
        )),
    }
}

// -------------------------------------------------------------- Dockerfile --

struct Dockerfile {
    stages: Vec<Stage>,
    /// `ARG`s before the first `FROM`, with their defaults.
    global_args: BTreeMap<String, String>,
}

struct Stage {
    /// The image, with `ARG`s substituted.
    image: String,
    name: Option<String>,
    /// (INSTRUCTION, arguments), continuation lines joined.
    instructions: Vec<(String, String)>,
}

impl Stage {
    fn all<'a>(&'a self, instruction: &str) -> impl Iterator<Item = &'a str> + 'a {
        let instruction = instruction.to_string();
        self.instructions.iter().filter(move |(i, _)| *i == instruction).map(|(_, a)| a.as_str())
    }

    fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last()
    }
}

fn substitute_args(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in args {
        out = out.replace(&format!("${{{k}}}"), v).replace(&format!("${k}"), v);
    }
    out
}

/// Splits on whitespace, keeping double-quoted runs together (quotes removed).
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut in_quotes, mut started) = (false, false);
    for c in text.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                started = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

fn parse_dockerfile(path: &Path) -> Dockerfile {
    let text = read(path);
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue; // comments (and parser directives), also inside continuations
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        logical.push(current);
    }

    let mut file = Dockerfile { stages: Vec::new(), global_args: BTreeMap::new() };
    for line in logical {
        let (instruction, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let (instruction, args) = (instruction.to_ascii_uppercase(), args.trim().to_string());
        if instruction == "FROM" {
            let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let image = substitute_args(words.first().copied().unwrap_or_default(), &file.global_args);
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            file.stages.push(Stage { image, name, instructions: Vec::new() });
        } else if let Some(stage) = file.stages.last_mut() {
            stage.instructions.push((instruction, args));
        } else if instruction == "ARG" {
            let (k, v) = args.split_once('=').unwrap_or((&args, ""));
            file.global_args.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        } else {
            panic!("{}: {instruction} before the first FROM", rel(path));
        }
    }
    file
}

/// `ENV` instructions of a stage as `(NAME, value)` pairs, in order.
fn dockerfile_env(stage: &Stage) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for args in stage.all("ENV") {
        let words = shell_words(args);
        if words.first().is_some_and(|w| w.contains('=')) {
            for w in words {
                let (k, v) = w.split_once('=').unwrap_or((&w, ""));
                env.push((k.to_string(), v.to_string()));
            }
        } else if let Some((k, v)) = args.split_once(char::is_whitespace) {
            env.push((k.to_string(), v.trim().to_string()));
        }
    }
    env
}

/// The numeric uid of a `USER` / compose `user:` value (`uid[:gid]`).
fn numeric_uid(user: &str) -> Option<u32> {
    user.split(':').next()?.trim().parse().ok()
}

/// Checks (g) and returns the runtime stage's `ENV` (the base of every container's environment).
fn check_dockerfile(problems: &mut Problems) -> (Vec<(String, String)>, u32, BTreeSet<u16>) {
    let path = deploy_dir().join("Dockerfile");
    let file = parse_dockerfile(&path);
    let at = rel(&path);
    problems.check(file.stages.len() >= 2, || format!("{at}: not multi-stage ({} FROM)", file.stages.len()));
    let (Some(builder), Some(runtime)) = (file.stages.first(), file.stages.last()) else {
        problems.push(format!("{at}: no FROM"));
        return (Vec::new(), 0, BTreeSet::new());
    };

    // The builder: a Rust image whose version is the pinned toolchain.
    let channel: String = Figment::from(Toml::file_exact(repo_root().join("rust-toolchain.toml")))
        .extract_inner("toolchain.channel")
        .expect("rust-toolchain.toml: toolchain.channel");
    let tag = builder.image.strip_prefix("rust:").unwrap_or_default();
    problems.check(tag.split('-').next() == Some(channel.as_str()), || {
        format!(
            "{at}: the builder image is {:?}; expected rust:{channel}-… (the channel in rust-toolchain.toml)",
            builder.image
        )
    });
    let builds_quis = builder.all("RUN").any(|run| {
        let words: Vec<&str> = run.split_whitespace().collect();
        words.windows(2).any(|w| w == ["cargo", "build"])
            && words.contains(&"--release")
            && words.contains(&"--locked")
            && words.windows(2).any(|w| w == ["-p", "quis"] || w == ["--package", "quis"])
    });
    problems
        .check(builds_quis, || format!("{at}: no `RUN cargo build --release -p quis --locked` in the builder stage"));

    // The runtime: copies from the builder, runs as a numeric non-root user, starts quis.
    problems.check(
        runtime.all("COPY").any(|c| builder.name.as_deref().is_some_and(|n| c.contains(&format!("--from={n}")))),
        || format!("{at}: the runtime stage copies nothing --from the builder stage"),
    );
    let uid = runtime.last("USER").and_then(numeric_uid);
    problems.check(uid.is_some_and(|u| u != 0), || {
        format!("{at}: the runtime stage must set a numeric non-root USER (got {:?})", runtime.last("USER"))
    });
    let entrypoint: Option<Vec<String>> = runtime.last("ENTRYPOINT").and_then(|e| serde_json::from_str(e).ok());
    problems.check(
        entrypoint.as_ref().and_then(|e| e.first()).is_some_and(|p| p == "quis" || p.ends_with("/quis")),
        || format!("{at}: ENTRYPOINT must be the exec form [\"quis\"] (got {entrypoint:?})"),
    );
    let mut exposed = BTreeSet::new();
    for args in runtime.all("EXPOSE") {
        for word in args.split_whitespace() {
            match word.trim_end_matches("/tcp").parse::<u16>() {
                Ok(port) => {
                    exposed.insert(port);
                }
                Err(_) => problems.push(format!("{at}: EXPOSE {word}: not a TCP port number")),
            }
        }
    }
    (dockerfile_env(runtime), uid.unwrap_or(0), exposed)
}

// ----------------------------------------------------------------- compose --

#[derive(Deserialize)]
struct ComposeFile {
    services: BTreeMap<String, ComposeService>,
    #[serde(default)]
    volumes: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    networks: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Deserialize)]
struct ComposeService {
    image: Option<String>,
    build: Option<serde_yaml::Value>,
    command: Option<serde_yaml::Value>,
    entrypoint: Option<serde_yaml::Value>,
    environment: Option<serde_yaml::Value>,
    env_file: Option<serde_yaml::Value>,
    #[serde(default)]
    ports: Vec<serde_yaml::Value>,
    #[serde(default)]
    expose: Vec<serde_yaml::Value>,
    depends_on: Option<serde_yaml::Value>,
    healthcheck: Option<serde_yaml::Value>,
    user: Option<String>,
    read_only: Option<bool>,
    #[serde(default)]
    cap_drop: Vec<String>,
    #[serde(default)]
    volumes: Vec<serde_yaml::Value>,
    networks: Option<serde_yaml::Value>,
}

/// The networks a compose service joins (`default` when it names none).
fn compose_networks(origin: &str, s: &ComposeService) -> Result<BTreeSet<String>, String> {
    match &s.networks {
        None => Ok(BTreeSet::from(["default".to_string()])),
        Some(serde_yaml::Value::Sequence(items)) => {
            items.iter().map(|i| scalar_string(i).ok_or_else(|| format!("{origin}: network {i:?}"))).collect()
        }
        Some(serde_yaml::Value::Mapping(map)) => {
            map.keys().map(|k| scalar_string(k).ok_or_else(|| format!("{origin}: network {k:?}"))).collect()
        }
        Some(other) => Err(format!("{origin}: networks {other:?}")),
    }
}

fn scalar_string(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Compose variable interpolation with no variables set: `${X:-default}` and
/// `${X-default}` give the default, `${X:?err}` / `${X?err}` a placeholder (the
/// operator must set it), `$$` is `$`. A bare `${X}` / `$X` is an error here: the
/// file would depend on the host's environment without a default.
fn interpolate(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after.find('}').ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let expr = &after[..end];
            rest = &after[end + 1..];
            let name_len = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            if let Some(default) = op.strip_prefix(":-").or_else(|| op.strip_prefix('-')) {
                out.push_str(default);
            } else if op.starts_with(":?") || op.starts_with('?') {
                out.push_str(&format!("required-{name}"));
            } else if op.is_empty() {
                return Err(format!("${{{expr}}} in {text:?} has no default"));
            } else {
                return Err(format!("${{{expr}}} in {text:?}: unsupported interpolation"));
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            return Err(format!("${name} in {text:?} has no default"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A compose `environment:` (mapping or `NAME=value` list), interpolated.
fn compose_env(origin: &str, env: Option<&serde_yaml::Value>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    match env {
        None => {}
        Some(serde_yaml::Value::Mapping(map)) => {
            for (k, v) in map {
                let k = scalar_string(k).ok_or_else(|| format!("{origin}: environment key {k:?}"))?;
                let v = if v.is_null() {
                    return Err(format!("{origin}: `{k}` has no value (it would come from the host)"));
                } else {
                    scalar_string(v).ok_or_else(|| format!("{origin}: `{k}` is not a scalar"))?
                };
                out.push((k, interpolate(&v).map_err(|e| format!("{origin}: {e}"))?));
            }
        }
        Some(serde_yaml::Value::Sequence(items)) => {
            for item in items {
                let s = scalar_string(item).ok_or_else(|| format!("{origin}: environment item {item:?}"))?;
                let (k, v) = s
                    .split_once('=')
                    .ok_or_else(|| format!("{origin}: `{s}` has no value (it would come from the host)"))?;
                out.push((k.to_string(), interpolate(v).map_err(|e| format!("{origin}: {e}"))?));
            }
        }
        Some(other) => {
            return Err(format!("{origin}: environment is neither a mapping nor a list: {other:?}"));
        }
    }
    Ok(out)
}

/// A compose command in exec (list) form.
fn compose_command(origin: &str, command: Option<&serde_yaml::Value>) -> Result<Vec<String>, String> {
    match command {
        None => Ok(Vec::new()),
        Some(serde_yaml::Value::Sequence(items)) => {
            items.iter().map(|i| scalar_string(i).ok_or_else(|| format!("{origin}: command item {i:?}"))).collect()
        }
        Some(other) => Err(format!("{origin}: write `command` as a list (exec form), not {other:?}")),
    }
}

/// A compose `ports:` entry → (host ip, published, target).
fn compose_port(origin: &str, port: &serde_yaml::Value) -> Result<(Option<String>, Option<u16>, u16), String> {
    let bad = |what: &str| format!("{origin}: port {port:?}: {what}");
    if let serde_yaml::Value::Mapping(_) = port {
        #[derive(Deserialize)]
        struct Long {
            target: u16,
            published: Option<serde_yaml::Value>,
            host_ip: Option<String>,
        }
        let long: Long = serde_yaml::from_value(port.clone()).map_err(|e| bad(&e.to_string()))?;
        let published = long
            .published
            .as_ref()
            .map(|p| scalar_string(p).and_then(|s| s.parse().ok()).ok_or_else(|| bad("published is not a port")))
            .transpose()?;
        return Ok((long.host_ip, published, long.target));
    }
    let s = scalar_string(port).ok_or_else(|| bad("not a string"))?;
    let s = s.split('/').next().unwrap_or_default();
    let parts: Vec<&str> = s.rsplitn(3, ':').collect();
    let num = |p: &str| p.parse::<u16>().map_err(|_| bad("not a single port (ranges are not supported here)"));
    match parts.as_slice() {
        [target] => Ok((None, None, num(target)?)),
        [target, published] => Ok((None, Some(num(published)?), num(target)?)),
        [target, published, ip] => Ok((Some(ip.to_string()), Some(num(published)?), num(target)?)),
        _ => Err(bad("unrecognised")),
    }
}

/// `depends_on` → service → condition (`service_started` for the list form).
fn compose_depends_on(origin: &str, deps: Option<&serde_yaml::Value>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    match deps {
        None => {}
        Some(serde_yaml::Value::Sequence(items)) => {
            for i in items {
                out.insert(
                    scalar_string(i).ok_or_else(|| format!("{origin}: depends_on {i:?}"))?,
                    "service_started".into(),
                );
            }
        }
        Some(serde_yaml::Value::Mapping(map)) => {
            for (k, v) in map {
                let name = scalar_string(k).ok_or_else(|| format!("{origin}: depends_on {k:?}"))?;
                let condition = v.get("condition").and_then(scalar_string).unwrap_or_else(|| "service_started".into());
                out.insert(name, condition);
            }
        }
        Some(other) => return Err(format!("{origin}: depends_on {other:?}")),
    }
    Ok(out)
}

/// Compose volume mounts → (source, target, read-only).
fn compose_mounts(origin: &str, volumes: &[serde_yaml::Value]) -> Result<Vec<(String, String, bool)>, String> {
    volumes
        .iter()
        .map(|v| match v {
            serde_yaml::Value::Mapping(_) => {
                let source = v.get("source").and_then(scalar_string).unwrap_or_default();
                let target =
                    v.get("target").and_then(scalar_string).ok_or_else(|| format!("{origin}: volume {v:?}"))?;
                let ro = v.get("read_only").and_then(serde_yaml::Value::as_bool).unwrap_or(false);
                Ok((source, target, ro))
            }
            _ => {
                let s = scalar_string(v).ok_or_else(|| format!("{origin}: volume {v:?}"))?;
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [target] => Ok((String::new(), target.to_string(), false)),
                    [source, target] => Ok((source.to_string(), target.to_string(), false)),
                    [source, target, mode] => {
                        Ok((source.to_string(), target.to_string(), mode.split(',').any(|m| m == "ro")))
                    }
                    _ => Err(format!("{origin}: volume {s:?}")),
                }
            }
        })
        .collect()
}

/// The gateway's upstream URLs must name the upstream's host and gRPC port.
fn check_upstreams(
    problems: &mut Problems,
    origin: &str,
    gateway: &QuisConfig,
    listen_ports: &BTreeMap<String, u16>,
    resolve: &Resolve,
) {
    let scheme = if gateway.tls.enabled { "https" } else { "http" };
    for (name, urls) in &gateway.gateway.upstreams {
        problems.check(SERVICES.contains(&name.as_str()), || {
            format!("{origin}: gateway upstream {name:?} is not in SERVICES {SERVICES:?}")
        });
        problems.check(!urls.is_empty(), || format!("{origin}: gateway upstream {name:?} has no URL"));
        for url in urls {
            let Some((s, host, port)) = parse_url(url) else {
                problems.push(format!("{origin}: gateway upstream {name:?}: {url:?} is not a URL"));
                continue;
            };
            problems.check(s == scheme, || {
                format!(
                    "{origin}: gateway upstream {url:?}: scheme must be {scheme} (tls.enabled = {})",
                    gateway.tls.enabled
                )
            });
            match (port, listen_ports.get(name)) {
                (Some(port), Some(listen)) => {
                    if let Err(e) = resolve(PUBLIC_SERVICE, name, &host, port, *listen) {
                        problems.push(format!("{origin}: gateway upstream {url:?}: {e}"));
                    }
                }
                (None, _) => problems.push(format!("{origin}: gateway upstream {url:?}: give the port explicitly")),
                (_, None) => {}
            }
        }
    }
}

// -------------------------------------------------------------- kubernetes --

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    namespace: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    config_map_generator: Vec<Generator>,
    #[serde(default)]
    secret_generator: Vec<serde_yaml::Value>,
    #[serde(default)]
    images: Vec<KustomizeImage>,
}

#[derive(Deserialize)]
struct Generator {
    name: String,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    literals: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KustomizeImage {
    name: String,
}

#[derive(Deserialize, Default, Clone)]
struct ObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<SelectorRequirement>,
}

#[derive(Deserialize, Clone)]
struct SelectorRequirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

impl LabelSelector {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => !value.is_some_and(|v| r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    other => panic!("unknown label selector operator {other:?}"),
                }
            })
    }
}

#[derive(Deserialize)]
struct Deployment {
    metadata: ObjectMeta,
    spec: DeploymentSpec,
}

#[derive(Deserialize)]
struct DeploymentSpec {
    replicas: Option<u32>,
    selector: LabelSelector,
    template: PodTemplate,
    strategy: Option<DeploymentStrategy>,
}

#[derive(Deserialize)]
struct DeploymentStrategy {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct PodTemplate {
    #[serde(default)]
    metadata: ObjectMeta,
    spec: PodSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    init_containers: Vec<Container>,
    containers: Vec<Container>,
    #[serde(default)]
    volumes: Vec<Volume>,
    #[serde(default)]
    security_context: PodSecurityContext,
    automount_service_account_token: Option<bool>,
    termination_grace_period_seconds: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSecurityContext {
    run_as_non_root: Option<bool>,
    run_as_user: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    image: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    ports: Vec<ContainerPort>,
    #[serde(default)]
    env: Vec<EnvVar>,
    #[serde(default)]
    env_from: Vec<serde_yaml::Value>,
    liveness_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    startup_probe: Option<Probe>,
    #[serde(default)]
    security_context: SecurityContext,
    resources: Option<Resources>,
    #[serde(default)]
    volume_mounts: Vec<VolumeMount>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    name: Option<String>,
    container_port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value: Option<String>,
    value_from: Option<serde_yaml::Value>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum IntOrString {
    Int(u16),
    Str(String),
}

impl std::fmt::Debug for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Str(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    http_get: Option<HttpGet>,
}

#[derive(Deserialize)]
struct HttpGet {
    path: Option<String>,
    port: IntOrString,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    run_as_non_root: Option<bool>,
    run_as_user: Option<u32>,
    allow_privilege_escalation: Option<bool>,
    read_only_root_filesystem: Option<bool>,
    privileged: Option<bool>,
    capabilities: Option<Capabilities>,
}

#[derive(Deserialize)]
struct Capabilities {
    #[serde(default)]
    drop: Vec<String>,
    #[serde(default)]
    add: Vec<String>,
}

#[derive(Deserialize)]
struct Resources {
    #[serde(default)]
    requests: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    limits: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
    #[serde(default)]
    read_only: bool,
    sub_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: String,
    config_map: Option<ConfigMapVolume>,
    secret: Option<SecretVolume>,
    empty_dir: Option<serde_yaml::Value>,
    persistent_volume_claim: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
struct ConfigMapVolume {
    name: String,
    #[serde(default)]
    items: Vec<KeyToPath>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretVolume {
    secret_name: String,
    #[serde(default, deserialize_with = "yaml11_mode")]
    default_mode: Option<u32>,
    #[serde(default)]
    items: Vec<KeyToPath>,
}

#[derive(Deserialize)]
struct KeyToPath {
    key: String,
    path: String,
    #[serde(default, deserialize_with = "yaml11_mode")]
    mode: Option<u32>,
}

/// A file mode as Kubernetes reads it. Its YAML parser follows YAML 1.1, where
/// `0400` is an octal integer (256); serde_yaml follows YAML 1.2 and yields the
/// string "0400". Decimal integers pass through.
fn yaml11_mode<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    match Option::<serde_yaml::Value>::deserialize(deserializer)? {
        None => Ok(None),
        Some(serde_yaml::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("mode {n}"))),
        Some(serde_yaml::Value::String(s)) if s.len() > 1 && s.starts_with('0') => u32::from_str_radix(&s[1..], 8)
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("mode {s:?} is not a YAML 1.1 octal integer"))),
        Some(other) => Err(serde::de::Error::custom(format!("mode {other:?} is not an integer"))),
    }
}

#[derive(Deserialize)]
struct Service {
    metadata: ObjectMeta,
    spec: ServiceSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    #[serde(default)]
    selector: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<ServicePort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    name: Option<String>,
    port: u16,
    target_port: Option<IntOrString>,
}

#[derive(Deserialize)]
struct NetworkPolicy {
    spec: NetworkPolicySpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkPolicySpec {
    pod_selector: LabelSelector,
    policy_types: Option<Vec<String>>,
    #[serde(default)]
    ingress: Vec<IngressRule>,
}

#[derive(Deserialize)]
struct IngressRule {
    #[serde(default)]
    from: Vec<Peer>,
    #[serde(default)]
    ports: Vec<PolicyPort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peer {
    pod_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    ip_block: Option<IpBlock>,
}

#[derive(Deserialize)]
struct IpBlock {
    cidr: String,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyPort {
    protocol: Option<String>,
    port: Option<IntOrString>,
    end_port: Option<u16>,
}

#[derive(Deserialize)]
struct ConfigMap {
    metadata: ObjectMeta,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// The kustomize base, parsed.
struct K8sBase {
    dir: PathBuf,
    kustomization: Kustomization,
    namespace: String,
    /// Labels of the namespace the base deploys into.
    namespace_labels: BTreeMap<String, String>,
    deployments: Vec<(String, Deployment)>,
    services: Vec<(String, Service)>,
    policies: Vec<(String, NetworkPolicy)>,
    /// ConfigMap name → key → content (resources and generators).
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Every (file, kind, name) seen.
    objects: Vec<(String, String, String)>,
}

fn k8s_base_dir() -> PathBuf {
    deploy_dir().join("k8s/base")
}

fn load_k8s_base() -> K8sBase {
    let dir = k8s_base_dir();
    let kustomization_path = dir.join("kustomization.yaml");
    let docs = yaml_documents(&kustomization_path);
    assert_eq!(docs.len(), 1, "{}: expected one YAML document", rel(&kustomization_path));
    let kustomization: Kustomization = from_yaml(&docs[0], &rel(&kustomization_path));
    let namespace = kustomization.namespace.clone().unwrap_or_else(|| "default".into());
    let mut base = K8sBase {
        dir: dir.clone(),
        namespace: namespace.clone(),
        namespace_labels: BTreeMap::from([("kubernetes.io/metadata.name".to_string(), namespace.clone())]),
        kustomization,
        deployments: Vec::new(),
        services: Vec::new(),
        policies: Vec::new(),
        config_maps: BTreeMap::new(),
        objects: Vec::new(),
    };
    for generator in &base.kustomization.config_map_generator {
        let entries = base.config_maps.entry(generator.name.clone()).or_default();
        for file in &generator.files {
            let (key, path) = file.split_once('=').unwrap_or((file.rsplit('/').next().unwrap_or(file), file));
            entries.insert(key.to_string(), read(&dir.join(path)));
        }
        for literal in &generator.literals {
            let (k, v) = literal.split_once('=').unwrap_or((literal, ""));
            entries.insert(k.to_string(), v.to_string());
        }
    }
    for resource in base.kustomization.resources.clone() {
        let path = dir.join(&resource);
        if path.is_dir() || !path.exists() {
            continue; // reported by kustomization_lists_every_file
        }
        for (i, doc) in yaml_documents(&path).into_iter().enumerate() {
            let at = format!("{resource} document {}", i + 1);
            let kind = doc.get("kind").and_then(serde_yaml::Value::as_str).unwrap_or_default().to_string();
            let name = doc.get("metadata").and_then(|m| m.get("name")).and_then(serde_yaml::Value::as_str);
            assert!(
                !kind.is_empty() && doc.get("apiVersion").is_some() && name.is_some(),
                "{at}: every object needs apiVersion, kind and metadata.name"
            );
            base.objects.push((resource.clone(), kind.clone(), name.unwrap_or_default().to_string()));
            let at = format!("{at} ({kind} {})", name.unwrap_or_default());
            match kind.as_str() {
                "Deployment" => base.deployments.push((resource.clone(), from_yaml(&doc, &at))),
                "Service" => base.services.push((resource.clone(), from_yaml(&doc, &at))),
                "NetworkPolicy" => base.policies.push((resource.clone(), from_yaml(&doc, &at))),
                "ConfigMap" => {
                    let cm: ConfigMap = from_yaml(&doc, &at);
                    base.config_maps.entry(cm.metadata.name).or_default().extend(cm.data);
                }
                "Namespace" if name == Some(namespace.as_str()) => {
                    let meta: ObjectMeta = from_yaml(&doc["metadata"], &at);
                    base.namespace_labels.extend(meta.labels);
                }
                _ => {}
            }
        }
    }
    base
}

/// Is this container running the quis image? (kustomize rewrites the image name.)
fn is_quis_image(image: Option<&str>, kustomize_names: &[String]) -> bool {
    let Some(image) = image else { return false };
    let repo = image.split('@').next().unwrap_or(image);
    let repo = match repo.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => repo,
    };
    kustomize_names.iter().any(|n| n == repo) || repo.rsplit('/').next() == Some("quis")
}

/// Resolves a port (number, or the name of a container port) against a container.
fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Option<u16> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::Str(name) => {
            ports.iter().find(|p| p.name.as_deref() == Some(name.as_str())).map(|p| p.container_port)
        }
    }
}

/// The one quis container of a Deployment.
fn quis_container<'a>(d: &'a Deployment, base: &K8sBase) -> Option<&'a Container> {
    let names: Vec<String> = base.kustomization.images.iter().map(|i| i.name.clone()).collect();
    let mut quis = d.spec.template.spec.containers.iter().filter(|c| is_quis_image(c.image.as_deref(), &names));
    let first = quis.next();
    if quis.next().is_some() { None } else { first }
}

/// The configuration file a container is given with `--config PATH`, resolved to the
/// ConfigMap content mounted there and written to a temporary file.
fn k8s_config_file(
    origin: &str,
    args: &[String],
    container: &Container,
    pod: &PodSpec,
    base: &K8sBase,
) -> Result<Option<tempfile::NamedTempFile>, String> {
    let Some(i) = args.iter().position(|a| a == "--config" || a.starts_with("--config=")) else {
        return Ok(None);
    };
    let path = match args[i].strip_prefix("--config=") {
        Some(p) => p.to_string(),
        None => args.get(i + 1).cloned().ok_or_else(|| format!("{origin}: --config without a path"))?,
    };
    for mount in &container.volume_mounts {
        let Some(volume) = pod.volumes.iter().find(|v| v.name == mount.name) else {
            continue;
        };
        let Some(cm) = &volume.config_map else {
            continue;
        };
        let file_in_volume = match &mount.sub_path {
            Some(sub) if path == mount.mount_path => sub.clone(),
            Some(_) => continue,
            None => match path.strip_prefix(&format!("{}/", mount.mount_path.trim_end_matches('/'))) {
                Some(rest) => rest.to_string(),
                None => continue,
            },
        };
        let key = if cm.items.is_empty() {
            file_in_volume.clone()
        } else {
            match cm.items.iter().find(|it| it.path == file_in_volume) {
                Some(it) => it.key.clone(),
                None => {
                    return Err(format!(
                        "{origin}: --config {path}: no item of ConfigMap {} has path {file_in_volume}",
                        cm.name
                    ));
                }
            }
        };
        let content = base
            .config_maps
            .get(&cm.name)
            .ok_or_else(|| format!("{origin}: --config {path}: ConfigMap {} is not in the base", cm.name))?
            .get(&key)
            .ok_or_else(|| format!("{origin}: --config {path}: ConfigMap {} has no key {key}", cm.name))?;
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
        std::io::Write::write_all(&mut file, content.as_bytes()).expect("write temp file");
        return Ok(Some(file));
    }
    Err(format!("{origin}: --config {path} is not a file of a mounted ConfigMap"))
}

/// One loaded Quis container of the Kubernetes base.
struct K8sQuis<'a> {
    service: &'static str,
    deployment: &'a Deployment,
    container: &'a Container,
    config: QuisConfig,
}

/// Loads the configuration of every SERVICES Deployment's quis container; problems are recorded.
fn load_k8s_services<'a>(
    base: &'a K8sBase,
    image_env: &[(String, String)],
    problems: &mut Problems,
) -> Vec<K8sQuis<'a>> {
    let mut out = Vec::new();
    for &service in SERVICES {
        let found: Vec<_> = base.deployments.iter().filter(|(_, d)| d.metadata.name == service).collect();
        let [(file, deployment)] = found.as_slice() else {
            problems.push(format!("k8s: expected exactly one Deployment named {service:?}, found {}", found.len()));
            continue;
        };
        let origin = format!("k8s {file} Deployment {service}");
        let Some(container) = quis_container(deployment, base) else {
            problems.push(format!("{origin}: expected exactly one container running the quis image"));
            continue;
        };
        let origin = format!("{origin} container {}", container.name);
        if !container.command.is_empty() {
            problems.push(format!("{origin}: set `args`, not `command` (the image's ENTRYPOINT is quis)"));
        }
        if container.args.get(..2) != Some(&["serve".to_string(), service.to_string()][..]) {
            problems
                .push(format!("{origin}: args must start with [\"serve\", \"{service}\"], got {:?}", container.args));
        }
        let rest: Vec<&String> = container.args.iter().skip(2).collect();
        let only_config = match rest.as_slice() {
            [] => true,
            [flag, _] => flag.as_str() == "--config",
            [flag] => flag.starts_with("--config="),
            _ => false,
        };
        if !only_config {
            problems.push(format!("{origin}: args after `serve {service}` may only be --config FILE (got {rest:?}); teach this test other flags"));
        }
        if !container.env_from.is_empty() {
            problems.push(format!("{origin}: envFrom is not checked by this test; list the variables under env"));
        }
        // The container's own variables, with `$(NAME)` expanded as the kubelet does.
        let mut own: Vec<(String, String)> = Vec::new();
        for var in &container.env {
            match (&var.value, &var.value_from) {
                (Some(v), None) => {
                    let (value, unresolved) = expand_k8s_refs(v, &own);
                    if !unresolved.is_empty() {
                        problems.push(format!(
                            "{origin}: env {} refers to {unresolved:?}, not defined before it: quis would read `$(…)` literally",
                            var.name
                        ));
                    }
                    own.push((var.name.clone(), value));
                }
                (None, Some(_)) => own.push((var.name.clone(), VALUE_FROM_PLACEHOLDER.to_string())),
                (None, None) => own.push((var.name.clone(), String::new())),
                (Some(_), Some(_)) => problems.push(format!("{origin}: env {} has both value and valueFrom", var.name)),
            }
        }
        let env: Vec<(String, String)> = image_env.iter().cloned().chain(own).collect();
        let file = match k8s_config_file(&origin, &container.args, container, &deployment.spec.template.spec, base) {
            Ok(file) => file,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        match load_config(&origin, file.as_ref().map(|f| f.path()), &env) {
            Ok(config) => out.push(K8sQuis { service, deployment, container, config }),
            Err(e) => problems.push(e),
        }
    }
    out
}

/// The key files a service reads, with the Secret each comes from.
fn key_files(service: &str, config: &QuisConfig) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    if service == WITNESS {
        // No JWKS: the witness verifies no tokens.
        out.push((WITNESS_KEY_SECRET, config.path(&config.witness.key)));
        return out;
    }
    // Every service that verifies tokens gets the JWKS from quis-keys.
    out.push((KEYS_SECRET, config.path(&config.auth.jwks_file)));
    // A service's own token comes from the Secret quis-<service>-token.
    let token = match service {
        "gateway" => config.gateway.token_file.as_ref().map(|f| ("quis-gateway-token", f)),
        "policy" => config.policy.token_file.as_ref().map(|f| ("quis-policy-token", f)),
        "vault" => config.vault.token_file.as_ref().map(|f| ("quis-vault-token", f)),
        "sentinel" => config.sentinel.token_file.as_ref().map(|f| ("quis-sentinel-token", f)),
        _ => None,
    };
    if let Some((secret, file)) = token {
        out.push((secret, config.path(file)));
    }
    if service == "vault" {
        let keys = &config.vault.keys;
        out.push((VAULT_KEYS_SECRET, config.path(&keys.org_secret)));
        out.push((VAULT_KEYS_SECRET, config.path(&keys.kek_dir).join("k1.hex")));
    }
    if service == LEDGER {
        let ledger = &config.ledger;
        for key in std::iter::once(&ledger.log_key).chain(&ledger.additional_log_keys).chain([&ledger.details_key]) {
            out.push((LEDGER_KEYS_SECRET, config.path(key)));
        }
    }
    out
}

/// The Secrets, ConfigMaps and PersistentVolumeClaims a pod refers to (`Kind/name`).
fn pod_references(pod: &PodSpec) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for v in &pod.volumes {
        if let Some(s) = &v.secret {
            refs.insert(format!("Secret/{}", s.secret_name));
        }
        if let Some(cm) = &v.config_map {
            refs.insert(format!("ConfigMap/{}", cm.name));
        }
        if let Some(claim) = v.persistent_volume_claim.as_ref().and_then(|c| c.get("claimName")).and_then(scalar_string)
        {
            refs.insert(format!("PersistentVolumeClaim/{claim}"));
        }
    }
    for c in pod.init_containers.iter().chain(&pod.containers) {
        for from in c.env.iter().filter_map(|e| e.value_from.as_ref()) {
            for (key, kind) in [("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")] {
                if let Some(name) = from.get(key).and_then(|r| r.get("name")).and_then(scalar_string) {
                    refs.insert(format!("{kind}/{name}"));
                }
            }
        }
    }
    refs
}

// -------------------------------------------------------- network policies --

/// Who sends a packet, for evaluating NetworkPolicies.
struct Source {
    what: String,
    /// `None`: outside the cluster (a client on the internet).
    namespace_labels: Option<BTreeMap<String, String>>,
    same_namespace: bool,
    pod_labels: BTreeMap<String, String>,
}

/// An address outside the cluster, for `ipBlock` rules.
const EXTERNAL_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

fn cidr_contains(cidr: &str, addr: Ipv4Addr) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len.min(32)) };
    u32::from(net) & mask == u32::from(addr) & mask
}

fn peer_matches(peer: &Peer, src: &Source) -> bool {
    if let Some(block) = &peer.ip_block {
        return src.namespace_labels.is_none()
            && cidr_contains(&block.cidr, EXTERNAL_ADDRESS)
            && !block.except.iter().any(|e| cidr_contains(e, EXTERNAL_ADDRESS));
    }
    let Some(ns_labels) = &src.namespace_labels else {
        return false;
    };
    let ns_ok = match &peer.namespace_selector {
        Some(sel) => sel.matches(ns_labels),
        None => src.same_namespace,
    };
    let pod_ok = peer.pod_selector.as_ref().is_none_or(|sel| sel.matches(&src.pod_labels));
    ns_ok && pod_ok && (peer.namespace_selector.is_some() || peer.pod_selector.is_some())
}

/// Whether the base's NetworkPolicies let `src` reach TCP `port` of a pod with
/// `pod_labels` and `ports` (for named ports).
fn ingress_allowed(
    policies: &[(String, NetworkPolicy)],
    pod_labels: &BTreeMap<String, String>,
    ports: &[ContainerPort],
    port: u16,
    src: &Source,
) -> bool {
    let selecting: Vec<&NetworkPolicy> = policies
        .iter()
        .map(|(_, p)| p)
        .filter(|p| p.spec.policy_types.as_ref().is_none_or(|t| t.iter().any(|t| t == "Ingress")))
        .filter(|p| p.spec.pod_selector.matches(pod_labels))
        .collect();
    if selecting.is_empty() {
        return true; // not isolated
    }
    selecting.iter().flat_map(|p| &p.spec.ingress).any(|rule| {
        let port_ok = rule.ports.is_empty()
            || rule.ports.iter().any(|p| {
                p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                    && match &p.port {
                        None => true,
                        Some(IntOrString::Int(n)) => (*n..=p.end_port.unwrap_or(*n)).contains(&port),
                        Some(named) => resolve_port(named, ports) == Some(port),
                    }
            });
        let from_ok = rule.from.is_empty() || rule.from.iter().any(|peer| peer_matches(peer, src));
        port_ok && from_ok
    })
}

// ------------------------------------------------------------------- tests --

/// (a)–(h) start here: every file under deploy/ is one of the kinds this test parses.
#[test]
fn every_file_in_deploy_parses() {
    let mut problems = Problems::default();
    let files = deploy_files();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        match (name, ext) {
            ("Dockerfile", _) => {
                let _ = parse_dockerfile(path);
            }
            (_, "yaml" | "yml") => {
                let _ = yaml_documents(path);
            }
            (_, "toml") => {
                // Every TOML file here is a Quis configuration.
                if let Err(e) = load_config(&rel(path), Some(path), &[]) {
                    problems.push(e);
                }
            }
            (_, "md") | ("Dockerfile.dockerignore", _) | (".gitignore", _) => {}
            // The operator's local compose variables (deploy/.gitignore keeps it out of git).
            (".env", _) => {}
            _ => problems.push(format!("{}: a file kind this test does not parse; teach it", rel(path))),
        }
    }
    for must in ["Dockerfile", "compose.yaml", "k8s/base/kustomization.yaml", "README.md"] {
        problems.check(deploy_dir().join(must).is_file(), || format!("deploy/{must} is missing"));
    }
    problems.finish("deploy/ files");
}

/// (g) Multi-stage, builds `-p quis` with the pinned toolchain, runs as a numeric
/// non-root user, EXPOSEs exactly the services' ports (with the ledger's tiles port).
#[test]
fn dockerfile_is_multi_stage_non_root_and_builds_quis() {
    let mut problems = Problems::default();
    let (image_env, _uid, exposed) = check_dockerfile(&mut problems);
    // The image's ENV loads on its own (it is the base of every container).
    match load_config("deploy/Dockerfile ENV", None, &image_env) {
        Ok(config) => {
            let mut expected = BTreeSet::new();
            for service in SERVICES {
                match listeners(service, &config) {
                    Ok(l) => expected.extend(l.iter().map(|(_, addr)| addr.port())),
                    Err(e) => problems.push(format!("default configuration: {e}; add {service:?} to DEFAULT_PORTS")),
                }
            }
            problems.check(exposed == expected, || {
                format!("deploy/Dockerfile: EXPOSE {exposed:?}, but the services' default ports are {expected:?}")
            });
        }
        Err(e) => problems.push(e),
    }
    problems.finish("deploy/Dockerfile");
}

/// (a), (b), (d), (e) for compose.
#[test]
fn compose_services_load_and_agree_on_ports() {
    let mut problems = Problems::default();
    let (image_env, image_uid, _) = check_dockerfile(&mut Problems::default());
    let path = deploy_dir().join("compose.yaml");
    let docs = yaml_documents(&path);
    assert_eq!(docs.len(), 1, "deploy/compose.yaml: expected one YAML document");
    let compose: ComposeFile = from_yaml(&docs[0], "deploy/compose.yaml");
    let at = "deploy/compose.yaml";

    // PostgreSQL 16 with a pg_isready health check.
    let postgres: Vec<&String> = compose
        .services
        .iter()
        .filter(|(_, s)| s.image.as_deref().is_some_and(|i| i.starts_with("postgres:")))
        .map(|(n, _)| n)
        .collect();
    problems.check(postgres.len() == 1, || format!("{at}: expected one postgres service, found {postgres:?}"));
    for name in &postgres {
        let s = &compose.services[*name];
        problems.check(s.image.as_deref().is_some_and(|i| i.starts_with("postgres:16")), || {
            format!("{at}: {name}: expected PostgreSQL 16, got {:?}", s.image)
        });
        let test = s.healthcheck.as_ref().and_then(|h| h.get("test")).map(|t| format!("{t:?}")).unwrap_or_default();
        problems.check(test.contains("pg_isready"), || format!("{at}: {name}: needs a healthcheck running pg_isready"));
    }

    // Which services run the quis image.
    let quis_image = compose.services.get(PUBLIC_SERVICE).and_then(|s| s.image.clone());
    let is_quis = |s: &ComposeService| s.build.is_some() || (s.image.is_some() && s.image == quis_image);

    // The one-shot init.
    let init: Vec<(&String, Vec<String>)> = compose
        .services
        .iter()
        .filter(|(_, s)| is_quis(s))
        .filter_map(|(n, s)| compose_command(n, s.command.as_ref()).ok().map(|c| (n, c)))
        .filter(|(_, c)| c.first().map(String::as_str) == Some("init"))
        .collect();
    let init_data_dir = match init.as_slice() {
        [(_, cmd)] => match cmd.as_slice() {
            [_, flag, dir] if flag == "--data-dir" => Some(PathBuf::from(dir)),
            _ => {
                problems.push(format!("{at}: init command must be [\"init\", \"--data-dir\", DIR], got {cmd:?}"));
                None
            }
        },
        _ => {
            problems.push(format!("{at}: expected one service with command [\"init\", ...], found {}", init.len()));
            None
        }
    };
    let init_name = init.first().map(|(n, _)| n.to_string()).unwrap_or_default();

    let mut loaded: BTreeMap<String, QuisConfig> = BTreeMap::new();
    for (name, service) in compose.services.iter().filter(|(_, s)| is_quis(s)) {
        let origin = format!("{at} service {name}");
        let env = match compose_env(&origin, service.environment.as_ref()) {
            Ok(env) => env,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        problems.check(service.env_file.is_none(), || {
            format!("{origin}: env_file is not checked by this test; use environment")
        });
        problems.check(service.entrypoint.is_none(), || format!("{origin}: keep the image's ENTRYPOINT"));
        // Security: non-root, read-only root, no capabilities.
        let uid = service.user.as_deref().map_or(Some(image_uid), numeric_uid);
        problems.check(uid.is_some_and(|u| u != 0), || {
            format!("{origin}: user {:?} must be a numeric non-root uid", service.user)
        });
        problems.check(service.read_only == Some(true), || format!("{origin}: set read_only: true"));
        problems.check(service.cap_drop.iter().any(|c| c == "ALL"), || format!("{origin}: set cap_drop: [ALL]"));

        let full_env: Vec<(String, String)> = image_env.iter().cloned().chain(env).collect();
        let config = match load_config(&origin, None, &full_env) {
            Ok(c) => c,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        // The data directory is a volume, shared with init, where init wrote the keys.
        let mounts = compose_mounts(&origin, &service.volumes).unwrap_or_else(|e| {
            problems.push(e);
            Vec::new()
        });
        let data_mount = mounts.iter().find(|(_, target, _)| Path::new(target) == config.data_dir);
        match data_mount {
            Some((source, _, ro)) => {
                problems.check(compose.volumes.contains_key(source), || {
                    format!("{origin}: data_dir {} must be a named volume (got {source:?})", config.data_dir.display())
                });
                problems.check(!ro, || format!("{origin}: the data volume must be writable"));
            }
            None => problems.push(format!("{origin}: no volume mounted at data_dir {}", config.data_dir.display())),
        }
        if let Some(dir) = &init_data_dir {
            problems.check(&config.data_dir == dir, || {
                format!(
                    "{origin}: data_dir {} differs from init's --data-dir {}",
                    config.data_dir.display(),
                    dir.display()
                )
            });
            problems.check(config.path(&config.auth.jwks_file) == dir.join(INIT_JWKS), || {
                format!(
                    "{origin}: auth.jwks_file resolves to {}, but init writes {}",
                    config.path(&config.auth.jwks_file).display(),
                    dir.join(INIT_JWKS).display()
                )
            });
        }
        // The stores must point at the compose PostgreSQL service.
        for (what, url) in [("store.url", &config.store.url), ("auth.revocation_store", &config.auth.revocation_store)]
        {
            if let Some(url) = url {
                let host = parse_url(url).map(|(_, h, _)| h).unwrap_or_default();
                problems.check(postgres.iter().any(|p| **p == host), || {
                    format!("{origin}: {what} host {host:?} is not the postgres service {postgres:?}")
                });
            }
        }
        loaded.insert(name.clone(), config);
    }

    // (d) every service has its own container: `serve <name>`; (b) ports; (e) exposure.
    let mut listen_ports = BTreeMap::new();
    let mut ports: BTreeMap<String, BTreeMap<&'static str, u16>> = BTreeMap::new();
    for &service in SERVICES {
        let origin = format!("{at} service {service}");
        let Some(s) = compose.services.get(service) else {
            problems.push(format!("{at}: no service {service:?}"));
            continue;
        };
        match compose_command(&origin, s.command.as_ref()) {
            Ok(cmd) => problems.check(cmd == ["serve", service], || {
                format!("{origin}: command must be [\"serve\", \"{service}\"], got {cmd:?}")
            }),
            Err(e) => problems.push(e),
        }
        let deps = compose_depends_on(&origin, s.depends_on.as_ref()).unwrap_or_else(|e| {
            problems.push(e);
            BTreeMap::new()
        });
        if service == WITNESS {
            // Shares nothing with Quis: not init's keys, not the database.
            for other in postgres.iter().copied().chain([&init_name]) {
                problems.check(!deps.contains_key(other), || {
                    format!("{origin}: must not depend_on {other} (the witness shares nothing with the log operator's services)")
                });
            }
        } else {
            problems.check(deps.get(&init_name).map(String::as_str) == Some("service_completed_successfully"), || {
                format!("{origin}: depends_on {init_name}: condition: service_completed_successfully")
            });
            for p in &postgres {
                problems.check(deps.get(*p).map(String::as_str) == Some("service_healthy"), || {
                    format!("{origin}: depends_on {p}: condition: service_healthy")
                });
            }
        }
        let Some(config) = loaded.get(service) else {
            // A configuration that does not load is reported above.
            problems.check(is_quis(s), || format!("{origin}: does not run the quis image"));
            continue;
        };
        let listen = match config.listen(service) {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{origin}: {e}"));
                continue;
            }
        };
        listen_ports.insert(service.to_string(), listen.listen.port());
        let named = listeners(service, config).unwrap_or_default();
        for (_, addr) in &named {
            problems.check(is_unspecified(addr), || {
                format!("{origin}: listens on {addr}; other containers cannot reach it (use 0.0.0.0)")
            });
        }
        ports.insert(service.to_string(), named.iter().map(|(n, a)| (*n, a.port())).collect());
        let expected: BTreeSet<u16> = named.iter().map(|(_, a)| a.port()).collect();
        let exposed: BTreeSet<u16> = s
            .expose
            .iter()
            .filter_map(|e| scalar_string(e).and_then(|e| e.trim_end_matches("/tcp").parse().ok()))
            .collect();
        let which = if service == LEDGER { " / ledger.http_listen" } else { "" };
        problems.check(exposed == expected, || {
            format!("{origin}: expose {exposed:?}, but it listens on {expected:?} (services.{service}.listen / admin_listen{which})")
        });
        for port in &s.ports {
            match compose_port(&origin, port) {
                Ok((_, _, target)) => problems.check(target == listen.listen.port(), || {
                    format!(
                        "{origin}: publishes container port {target}, but services.{service}.listen is {}",
                        listen.listen
                    )
                }),
                Err(e) => problems.push(e),
            }
        }
        if service == PUBLIC_SERVICE {
            problems
                .check(!s.ports.is_empty(), || format!("{origin}: the public service must publish its listen port"));
        }
    }
    // (e) nothing but the public service is published.
    for (name, s) in &compose.services {
        problems.check(name == PUBLIC_SERVICE || s.ports.is_empty(), || {
            format!("{at} service {name}: publishes {:?}; only {PUBLIC_SERVICE} may publish ports", s.ports)
        });
    }
    // URLs: the compose service name and the listener's port; the client starts after
    // its target and shares a network with it.
    let mut networks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, s) in &compose.services {
        match compose_networks(&format!("{at} service {name}"), s) {
            Ok(nets) => {
                networks.insert(name.clone(), nets);
            }
            Err(e) => problems.push(e),
        }
    }
    let resolve = |client: &str, target: &str, host: &str, port: u16, target_port: u16| {
        if host != target {
            return Err(format!("host must be the compose service {target:?}"));
        }
        if port != target_port {
            return Err(format!("port {port}, but it listens on {target_port}"));
        }
        let deps = compose
            .services
            .get(client)
            .and_then(|s| compose_depends_on(client, s.depends_on.as_ref()).ok())
            .unwrap_or_default();
        if !deps.contains_key(target) {
            return Err(format!("{client} does not depend_on {target:?}"));
        }
        if networks.get(client).is_none_or(|c| networks.get(target).is_none_or(|t| c.is_disjoint(t))) {
            return Err(format!("{client} and {target} share no network"));
        }
        Ok(())
    };
    if let Some(gateway) = loaded.get(PUBLIC_SERVICE) {
        check_upstreams(&mut problems, &format!("{at} service {PUBLIC_SERVICE}"), gateway, &listen_ports, &resolve);
    }
    check_ledger_wiring(&mut problems, &format!("{at} service"), &loaded, &ports, &resolve);

    // Networks: declared at the top level; the witness shares one only with the ledger.
    for (name, nets) in &networks {
        for net in nets.iter().filter(|n| *n != "default" && !compose.networks.contains_key(*n)) {
            problems.push(format!("{at} service {name}: network {net:?} is not declared under networks:"));
        }
    }
    if let Some(witness_nets) = networks.get(WITNESS) {
        for (name, nets) in networks.iter().filter(|(n, _)| *n != WITNESS) {
            problems.check(name == LEDGER || nets.is_disjoint(witness_nets), || {
                format!(
                    "{at} service {name}: shares the network(s) {:?} with the witness, which only the ledger may reach",
                    nets.intersection(witness_nets).collect::<Vec<_>>()
                )
            });
        }
    }

    // The witness's own data: no volume or store of another Quis service.
    let mounts_of =
        |name: &str| compose.services.get(name).and_then(|s| compose_mounts(name, &s.volumes).ok()).unwrap_or_default();
    if let Some(witness) = loaded.get(WITNESS) {
        let own: BTreeSet<String> = mounts_of(WITNESS).into_iter().map(|(src, _, _)| src).collect();
        for (name, config) in loaded.iter().filter(|(n, _)| *n != WITNESS) {
            let theirs: BTreeSet<String> = mounts_of(name).into_iter().map(|(src, _, _)| src).collect();
            problems.check(own.is_disjoint(&theirs), || {
                format!(
                    "{at} service {WITNESS}: shares the volume(s) {:?} with {name}",
                    own.intersection(&theirs).collect::<Vec<_>>()
                )
            });
            let store = witness.store_url(WITNESS);
            problems.check(store != config.store_url(name) && store != config.revocation_store_url(), || {
                format!("{at} service {WITNESS}: its store {store} is also {name}'s; the witness needs one of its own")
            });
        }
    }
    // A singleton's store survives `down` / `up`: a database, or SQLite in a named volume.
    for &service in SINGLETONS {
        let Some(config) = loaded.get(service) else { continue };
        let url = config.store_url(service);
        let Some(path) = sqlite_path(&url) else { continue };
        let persistent = mounts_of(service)
            .iter()
            .any(|(src, target, ro)| !ro && compose.volumes.contains_key(src) && path.starts_with(target));
        problems.check(persistent, || {
            format!("{at} service {service}: its SQLite store {} is not in a writable named volume", path.display())
        });
    }
    problems.finish("deploy/compose.yaml");
}

/// (f) The ConfigMap's quis.toml loads as a QuisConfig on its own.
#[test]
fn k8s_config_map_toml_loads() {
    let base = load_k8s_base();
    let mut problems = Problems::default();
    let mut found = 0;
    for (name, entries) in &base.config_maps {
        for (key, content) in entries.iter().filter(|(k, _)| k.ends_with(".toml")) {
            found += 1;
            let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
            std::io::Write::write_all(&mut file, content.as_bytes()).expect("write temp file");
            if let Err(e) = load_config(&format!("k8s ConfigMap {name} key {key}"), Some(file.path()), &[]) {
                problems.push(e);
            }
        }
    }
    problems.check(found > 0, || "k8s: no ConfigMap holds a .toml configuration".to_string());
    problems.finish("k8s ConfigMap");
}

/// (a), (b), (c), (d) for Kubernetes: each service's Deployment and Service.
#[test]
fn k8s_services_load_and_agree_on_ports_and_probes() {
    let base = load_k8s_base();
    let mut problems = Problems::default();
    let (image_env, image_uid, _) = check_dockerfile(&mut Problems::default());
    let loaded = load_k8s_services(&base, &image_env, &mut problems);

    // Service name → (Service port → container port it targets) for the upstream check.
    let mut service_ports: BTreeMap<String, BTreeMap<u16, u16>> = BTreeMap::new();
    let mut listen_ports = BTreeMap::new();
    let mut ports: BTreeMap<String, BTreeMap<&'static str, u16>> = BTreeMap::new();
    for q in &loaded {
        let origin = format!("k8s Deployment {} container {}", q.service, q.container.name);
        let pod = &q.deployment.spec.template;
        let Ok(listen) = q.config.listen(q.service) else {
            problems.push(format!("{origin}: no services.{}.listen in its configuration", q.service));
            continue;
        };
        listen_ports.insert(q.service.to_string(), listen.listen.port());
        let listening = listeners(q.service, &q.config).unwrap_or_default();
        for (_, addr) in &listening {
            problems.check(is_unspecified(addr), || {
                format!("{origin}: listens on {addr}; the kubelet and Services cannot reach it (use 0.0.0.0)")
            });
        }
        ports.insert(q.service.to_string(), listening.iter().map(|(n, a)| (*n, a.port())).collect());
        // (b) container ports: exactly grpc (the witness: http) = listen, admin = admin_listen,
        // and the ledger's tiles = ledger.http_listen.
        let named = |n: &str| q.container.ports.iter().find(|p| p.name.as_deref() == Some(n)).map(|p| p.container_port);
        for (name, addr) in &listening {
            let setting = match *name {
                "admin" => format!("services.{}.admin_listen", q.service),
                "tiles" => "ledger.http_listen".to_string(),
                _ => format!("services.{}.listen", q.service),
            };
            problems.check(named(name) == Some(addr.port()), || {
                format!("{origin}: container port `{name}` is {:?}, {setting} is {addr}", named(name))
            });
        }
        let declared: BTreeSet<u16> = q.container.ports.iter().map(|p| p.container_port).collect();
        let expected: BTreeSet<u16> = listening.iter().map(|(_, a)| a.port()).collect();
        problems.check(declared == expected, || {
            format!("{origin}: containerPorts {declared:?}, but it listens on {expected:?}")
        });

        // (c) probes: /livez and /readyz on the admin port.
        for (kind, probe, paths) in [
            ("livenessProbe", &q.container.liveness_probe, &["/livez"][..]),
            ("readinessProbe", &q.container.readiness_probe, &["/readyz"][..]),
            ("startupProbe", &q.container.startup_probe, &["/livez", "/readyz"][..]),
        ] {
            let Some(probe) = probe else {
                problems.check(kind == "startupProbe", || format!("{origin}: no {kind}"));
                continue;
            };
            let Some(get) = &probe.http_get else {
                problems.push(format!("{origin}: {kind} must be an httpGet on the admin port"));
                continue;
            };
            problems.check(get.path.as_deref().is_some_and(|p| paths.contains(&p)), || {
                format!("{origin}: {kind} path {:?}, expected one of {paths:?}", get.path)
            });
            let port = resolve_port(&get.port, &q.container.ports);
            problems.check(port == Some(listen.admin_listen.port()), || {
                format!(
                    "{origin}: {kind} port {:?} resolves to {port:?}, services.{}.admin_listen is {}",
                    get.port, q.service, listen.admin_listen
                )
            });
        }

        // Deployment shape.
        problems.check(q.deployment.spec.selector.matches(&pod.metadata.labels), || {
            format!("{origin}: spec.selector does not match the pod template's labels")
        });
        if SINGLETONS.contains(&q.service) {
            // One writer: a second replica (or a rolling update's surge) would run two.
            problems.check(q.deployment.spec.replicas == Some(1), || {
                format!("{origin}: replicas {:?}; exactly 1 (one writer of its state)", q.deployment.spec.replicas)
            });
            let strategy = q.deployment.spec.strategy.as_ref().and_then(|s| s.kind.as_deref());
            problems.check(strategy == Some("Recreate"), || {
                format!("{origin}: strategy {strategy:?}; Recreate, so the old pod is gone before the new one starts")
            });
        } else {
            problems.check(q.deployment.spec.replicas.unwrap_or(1) >= 2, || {
                format!("{origin}: replicas {:?}; run at least 2", q.deployment.spec.replicas)
            });
        }
        let budget = q.config.shutdown.grace_secs + q.config.shutdown.drain_delay_ms.div_ceil(1000);
        let termination = pod.spec.termination_grace_period_seconds.unwrap_or(30);
        problems.check(termination > budget, || {
            format!(
                "{origin}: terminationGracePeriodSeconds {termination} must exceed shutdown grace + drain ({budget} s)"
            )
        });
        // The pod's uid owns the image's data directory.
        let uid = q.container.security_context.run_as_user.or(pod.spec.security_context.run_as_user);
        problems.check(uid.is_none_or(|u| u == image_uid), || {
            format!("{origin}: runAsUser {uid:?} differs from the image's USER {image_uid}")
        });

        // The data directory: a writable volume; the JWKS under it, installed by an init container.
        let data_mount = q.container.volume_mounts.iter().find(|m| Path::new(&m.mount_path) == q.config.data_dir);
        match data_mount {
            Some(m) => {
                problems.check(!m.read_only, || format!("{origin}: the data directory mount must be writable"));
                let volume = pod.spec.volumes.iter().find(|v| v.name == m.name);
                problems.check(
                    volume.is_some_and(|v| v.empty_dir.is_some() || v.persistent_volume_claim.is_some()),
                    || {
                        format!(
                            "{origin}: data_dir {} must be an emptyDir or a PersistentVolumeClaim",
                            q.config.data_dir.display()
                        )
                    },
                );
                // Each key file comes from its Secret, copied by an init container into
                // the directory where the configuration looks for it.
                for (secret, file) in key_files(q.service, &q.config) {
                    let volumes: Vec<&Volume> = pod
                        .spec
                        .volumes
                        .iter()
                        .filter(|v| v.secret.as_ref().is_some_and(|s| s.secret_name == secret))
                        .collect();
                    let installer = pod.spec.init_containers.iter().find_map(|c| {
                        let writes_data = c.volume_mounts.iter().any(|im| im.name == m.name && !im.read_only);
                        let from = c.volume_mounts.iter().find(|im| volumes.iter().any(|v| v.name == im.name))?;
                        writes_data.then_some((c, from))
                    });
                    let Some((installer, from)) = installer else {
                        problems.push(format!(
                            "{origin}: no init container copies the Secret {secret} into the data volume {}",
                            m.name
                        ));
                        continue;
                    };
                    let script = installer.command.iter().chain(&installer.args).cloned().collect::<Vec<_>>().join(" ");
                    let dir = file.parent().map(|d| d.display().to_string()).unwrap_or_default();
                    problems.check(
                        file.starts_with(&q.config.data_dir)
                            && script.contains(&from.mount_path)
                            && script.contains(&dir),
                        || {
                            format!(
                                "{origin}: init container {} must copy {} (Secret {secret}) into {dir}, where the configuration reads {}",
                                installer.name,
                                from.mount_path,
                                file.display()
                            )
                        },
                    );
                    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let items: Vec<&KeyToPath> =
                        volumes.iter().filter_map(|v| v.secret.as_ref()).flat_map(|s| &s.items).collect();
                    problems.check(items.is_empty() || items.iter().any(|i| i.path == name), || {
                        format!(
                            "{origin}: the Secret {secret} volume lists no item with path {name} ({})",
                            file.display()
                        )
                    });
                }
            }
            None => problems.push(format!("{origin}: nothing is mounted at data_dir {}", q.config.data_dir.display())),
        }
        let jwks = q.config.path(&q.config.auth.jwks_file);
        problems.check(q.config.auth.jwks_url.is_some() || jwks.starts_with(&q.config.data_dir), || {
            format!(
                "{origin}: auth.jwks_file {} is outside data_dir {}, where the keys are installed",
                jwks.display(),
                q.config.data_dir.display()
            )
        });

        // (d) its Service: selects exactly this Deployment's pods, targets its ports.
        let services: Vec<&Service> =
            base.services.iter().map(|(_, s)| s).filter(|s| s.metadata.name == q.service).collect();
        let [service] = services.as_slice() else {
            problems.push(format!("k8s: expected exactly one Service named {:?}, found {}", q.service, services.len()));
            continue;
        };
        let selector = LabelSelector { match_labels: service.spec.selector.clone(), match_expressions: Vec::new() };
        for (_, d) in &base.deployments {
            let selects = !service.spec.selector.is_empty() && selector.matches(&d.spec.template.metadata.labels);
            problems.check(selects == (d.metadata.name == q.service), || {
                format!(
                    "k8s Service {}: its selector {} Deployment {}'s pods",
                    q.service,
                    if selects { "selects" } else { "does not select" },
                    d.metadata.name
                )
            });
        }
        let mut targets = BTreeMap::new();
        for p in &service.spec.ports {
            let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
            let resolved = resolve_port(&target, &q.container.ports);
            problems.check(resolved.is_some_and(|r| expected.contains(&r)), || {
                format!(
                    "k8s Service {} port {:?}: targetPort {target:?} resolves to {resolved:?}, not one of {expected:?}",
                    q.service, p.name
                )
            });
            if let Some(r) = resolved {
                targets.insert(p.port, r);
            }
        }
        for (name, addr) in listening.iter().filter(|(n, _)| *n != "admin") {
            problems.check(targets.values().any(|t| *t == addr.port()), || {
                format!("k8s Service {}: no port targets the {name} listener {addr}", q.service)
            });
        }
        service_ports.insert(q.service.to_string(), targets);
    }

    // URLs name the target's Service and a Service port that targets the right listener:
    // the gateway's upstreams (gRPC) and tiles, the ledger's witness.
    let ns = base.namespace.clone();
    let resolve = |_client: &str, name: &str, host: &str, port: u16, target_port: u16| {
        let hosts = [
            name.to_string(),
            format!("{name}.{ns}"),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.cluster.local"),
        ];
        if !hosts.iter().any(|h| h == host) {
            return Err(format!("host must be the Service {name:?} (one of {hosts:?})"));
        }
        match service_ports.get(name).and_then(|p| p.get(&port)) {
            Some(target) if *target == target_port => Ok(()),
            other => Err(format!("Service {name} port {port} targets {other:?}, not {target_port}")),
        }
    };
    if let Some(gateway) = loaded.iter().find(|q| q.service == PUBLIC_SERVICE) {
        check_upstreams(
            &mut problems,
            &format!("k8s Deployment {PUBLIC_SERVICE}"),
            &gateway.config,
            &listen_ports,
            &resolve,
        );
    }
    let configs: BTreeMap<String, QuisConfig> =
        loaded.iter().map(|q| (q.service.to_string(), q.config.clone())).collect();
    check_ledger_wiring(&mut problems, "k8s Deployment", &configs, &ports, &resolve);

    // A singleton's store survives the pod: a database (a Secret's URL), or SQLite on a
    // PersistentVolumeClaim.
    for q in loaded.iter().filter(|q| SINGLETONS.contains(&q.service)) {
        let Some(path) = sqlite_path(&q.config.store_url(q.service)) else { continue };
        let pod = &q.deployment.spec.template.spec;
        let persistent = q.container.volume_mounts.iter().any(|m| {
            !m.read_only
                && path.starts_with(&m.mount_path)
                && pod.volumes.iter().any(|v| v.name == m.name && v.persistent_volume_claim.is_some())
        });
        problems.check(persistent, || {
            format!(
                "k8s Deployment {}: its SQLite store {} is not on a PersistentVolumeClaim: a restart would lose it",
                q.service,
                path.display()
            )
        });
    }

    // The witness shares no Secret, ConfigMap or volume claim with the Quis services.
    if let Some(witness) = loaded.iter().find(|q| q.service == WITNESS) {
        let own = pod_references(&witness.deployment.spec.template.spec);
        for q in loaded.iter().filter(|q| q.service != WITNESS) {
            let theirs = pod_references(&q.deployment.spec.template.spec);
            let shared: Vec<&String> = own.intersection(&theirs).collect();
            problems.check(shared.is_empty(), || {
                format!("k8s Deployment {WITNESS}: shares {shared:?} with {}; it is run by another party", q.service)
            });
        }
    }
    problems.finish("deploy/k8s/base");
}

/// Every container (quis and init) is locked down; keys come from the operator's Secret.
#[test]
fn k8s_pods_are_locked_down() {
    let base = load_k8s_base();
    let mut problems = Problems::default();
    for (file, kind, name) in &base.objects {
        problems.check(kind != "Secret", || {
            format!("k8s {file}: Secret {name}: secret values are not committed; document `kubectl create secret`")
        });
    }
    problems.check(base.kustomization.secret_generator.is_empty(), || {
        "k8s kustomization.yaml: no secretGenerator (secret values are not committed)".into()
    });
    problems.check(base.objects.iter().any(|(_, k, n)| k == "Namespace" && *n == base.namespace), || {
        format!("k8s: no Namespace {} resource", base.namespace)
    });
    let image_names: Vec<String> = base.kustomization.images.iter().map(|i| i.name.clone()).collect();
    for (file, d) in &base.deployments {
        let pod = &d.spec.template.spec;
        let origin = format!("k8s {file} Deployment {}", d.metadata.name);
        problems.check(pod.automount_service_account_token == Some(false), || {
            format!("{origin}: set automountServiceAccountToken: false")
        });
        for c in pod.init_containers.iter().chain(&pod.containers) {
            let at = format!("{origin} container {}", c.name);
            for m in &c.volume_mounts {
                problems.check(pod.volumes.iter().any(|v| v.name == m.name), || {
                    format!("{at}: mounts {:?}, which is not a volume of the pod", m.name)
                });
            }
            let sc = &c.security_context;
            problems.check(sc.run_as_non_root.or(pod.security_context.run_as_non_root) == Some(true), || {
                format!("{at}: runAsNonRoot: true")
            });
            problems
                .check(sc.read_only_root_filesystem == Some(true), || format!("{at}: readOnlyRootFilesystem: true"));
            problems.check(sc.allow_privilege_escalation == Some(false), || {
                format!("{at}: allowPrivilegeEscalation: false")
            });
            problems.check(sc.privileged != Some(true), || format!("{at}: must not be privileged"));
            let caps = sc.capabilities.as_ref();
            problems.check(caps.is_some_and(|c| c.drop.iter().any(|d| d == "ALL") && c.add.is_empty()), || {
                format!("{at}: capabilities: drop [ALL], add nothing")
            });
            let res = c.resources.as_ref();
            problems.check(
                res.is_some_and(|r| {
                    r.requests.contains_key("cpu")
                        && r.requests.contains_key("memory")
                        && r.limits.contains_key("memory")
                }),
                || format!("{at}: resources need requests.cpu, requests.memory and limits.memory"),
            );
            // quis refuses group-readable key files, and Secret volume files are group-readable
            // (fsGroup): quis containers get keys copied by an init container, never the Secret.
            if is_quis_image(c.image.as_deref(), &image_names) {
                for m in &c.volume_mounts {
                    let secret = pod.volumes.iter().find(|v| v.name == m.name).and_then(|v| v.secret.as_ref());
                    problems.check(secret.is_none(), || {
                        format!("{at}: mounts Secret volume {}; quis refuses its group-readable files: copy them with an init container", m.name)
                    });
                }
            }
        }
        for v in &pod.volumes {
            let Some(secret) = &v.secret else { continue };
            let at = format!("{origin} volume {}", v.name);
            let open = |mode: u32| mode & 0o077 != 0;
            problems.check(secret.default_mode.is_some_and(|m| !open(m)), || {
                format!(
                    "{at}: Secret {}: defaultMode {:?} must be 0400 or 0600",
                    secret.secret_name,
                    secret.default_mode.map(|m| format!("{m:o}"))
                )
            });
            for item in &secret.items {
                problems.check(item.mode.is_none_or(|m| !open(m)), || {
                    format!("{at}: item {} mode {:?} must be 0400 or 0600", item.key, item.mode)
                });
            }
            for (own, owner) in [(LEDGER_KEYS_SECRET, LEDGER), (WITNESS_KEY_SECRET, WITNESS)] {
                problems.check(secret.secret_name != own || d.metadata.name == owner, || {
                    format!("{at}: only {owner} may receive the Secret {own}")
                });
            }
            if secret.secret_name == KEYS_SECRET && d.metadata.name != SIGNING_KEY_HOLDER {
                problems.check(!secret.items.is_empty() && secret.items.iter().all(|i| i.key != SIGNING_KEY), || {
                    format!(
                        "{at}: only {SIGNING_KEY_HOLDER} may receive {SIGNING_KEY}; list the needed keys under items"
                    )
                });
            }
        }
    }
    problems.finish("deploy/k8s/base security");
}

/// (e) NetworkPolicies: only the gateway's gRPC port is reachable from outside; backends
/// accept gRPC from the gateway (and the ledger from the client label); the ledger's
/// tiles only from the gateway; the witness only from the ledger; admin ports from the
/// monitoring namespace.
#[test]
fn k8s_network_policies_expose_only_the_gateway() {
    let base = load_k8s_base();
    let mut problems = Problems::default();
    let (image_env, _, _) = check_dockerfile(&mut Problems::default());
    let loaded = load_k8s_services(&base, &image_env, &mut Problems::default());
    problems.check(loaded.len() == SERVICES.len(), || {
        "k8s: not every service loads; see k8s_services_load_and_agree_on_ports_and_probes".into()
    });

    let external = Source {
        what: "a client outside the cluster".into(),
        namespace_labels: None,
        same_namespace: false,
        pod_labels: BTreeMap::new(),
    };
    let other_ns = Source {
        what: "a pod in namespace `default`".into(),
        namespace_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".into(), "default".into())])),
        same_namespace: false,
        pod_labels: BTreeMap::from([("app".into(), "other".into())]),
    };
    let monitoring = Source {
        what: "Prometheus in namespace `monitoring`".into(),
        namespace_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".into(), "monitoring".into())])),
        same_namespace: false,
        pod_labels: BTreeMap::from([("app.kubernetes.io/name".into(), "prometheus".into())]),
    };
    let stranger = Source {
        what: format!("an unlabelled pod in namespace `{}`", base.namespace),
        namespace_labels: Some(base.namespace_labels.clone()),
        same_namespace: true,
        pod_labels: BTreeMap::from([("app".into(), "debug".into())]),
    };
    let gateway_pod = loaded.iter().find(|q| q.service == PUBLIC_SERVICE).map(|g| Source {
        what: format!("a {PUBLIC_SERVICE} pod"),
        namespace_labels: Some(base.namespace_labels.clone()),
        same_namespace: true,
        pod_labels: g.deployment.spec.template.metadata.labels.clone(),
    });
    // Every service's pods, as senders.
    let pods: Vec<(&str, Source)> = loaded
        .iter()
        .map(|q| {
            (
                q.service,
                Source {
                    what: format!("a {} pod", q.service),
                    namespace_labels: Some(base.namespace_labels.clone()),
                    same_namespace: true,
                    pod_labels: q.deployment.spec.template.metadata.labels.clone(),
                },
            )
        })
        .collect();
    // A future backend that calls the ledger (vault, policy, sentinel): the client label.
    let client = Source {
        what: "a backend labelled quis.io/client (vault, policy, sentinel)".into(),
        namespace_labels: Some(base.namespace_labels.clone()),
        same_namespace: true,
        pod_labels: BTreeMap::from([
            ("app.kubernetes.io/name".into(), "quis".into()),
            ("app.kubernetes.io/component".into(), "vault".into()),
            ("quis.io/tier".into(), "backend".into()),
            ("quis.io/client".into(), "true".into()),
        ]),
    };

    for q in &loaded {
        let Ok(listen) = q.config.listen(q.service) else {
            continue;
        };
        let (grpc, admin) = (listen.listen.port(), listen.admin_listen.port());
        let labels = &q.deployment.spec.template.metadata.labels;
        let ports = &q.container.ports;
        let mut expect = |src: &Source, port: u16, allowed: bool| {
            let got = ingress_allowed(&base.policies, labels, ports, port, src);
            problems.check(got == allowed, || {
                format!(
                    "k8s NetworkPolicies: {} {} reach {} port {port}; expected {}",
                    src.what,
                    if got { "can" } else { "cannot" },
                    q.service,
                    if allowed { "allowed" } else { "denied" }
                )
            });
        };
        let public = q.service == PUBLIC_SERVICE;
        for src in [&external, &other_ns] {
            expect(src, grpc, public);
            expect(src, admin, false);
        }
        expect(&monitoring, admin, true);
        expect(&monitoring, grpc, public);
        expect(&stranger, grpc, public);
        expect(&stranger, admin, false);
        if let Some(g) = &gateway_pod {
            let is_upstream = loaded
                .iter()
                .find(|g| g.service == PUBLIC_SERVICE)
                .is_some_and(|g| g.config.gateway.upstreams.contains_key(q.service));
            if is_upstream || public {
                expect(g, grpc, true);
            }
        }
        // The ledger: gRPC from the client label; tiles from the gateway only.
        if q.service == LEDGER {
            expect(&client, grpc, true);
            let tiles = q.config.ledger.http_listen.port();
            for src in [&external, &other_ns, &monitoring, &stranger, &client] {
                expect(src, tiles, false);
            }
            if let Some(g) = &gateway_pod {
                expect(g, tiles, true);
            }
        }
        // The witness: its HTTP port from the ledger only.
        if q.service == WITNESS {
            expect(&client, grpc, false);
            for (service, pod) in &pods {
                expect(pod, grpc, *service == LEDGER);
            }
        }
    }
    problems.check(loaded.iter().any(|q| q.service == LEDGER) && loaded.iter().any(|q| q.service == WITNESS), || {
        "k8s: the ledger and the witness must both load for their policies to be checked".into()
    });
    problems.finish("deploy/k8s/base network policies");
}

/// (h) kustomization.yaml lists every file of the base directory, and only existing ones.
#[test]
fn kustomization_lists_every_file() {
    let base = load_k8s_base();
    let mut problems = Problems::default();
    let mut listed: BTreeSet<String> = base.kustomization.resources.iter().cloned().collect();
    for generator in &base.kustomization.config_map_generator {
        for file in &generator.files {
            listed.insert(file.split_once('=').map_or(file.as_str(), |(_, p)| p).to_string());
        }
    }
    let present: BTreeSet<String> = fs::read_dir(&base.dir)
        .expect("read k8s/base")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    for file in present.difference(&listed) {
        problems.push(format!(
            "deploy/k8s/base/{file} is not listed in kustomization.yaml (resources or configMapGenerator files)"
        ));
    }
    for file in listed.difference(&present) {
        problems.push(format!("deploy/k8s/base/kustomization.yaml lists {file}, which does not exist"));
    }
    for (file, kind, name) in &base.objects {
        problems
            .check(!matches!(kind.as_str(), "Kustomization"), || format!("{file}: {kind} {name} is not a resource"));
    }
    problems.finish("deploy/k8s/base/kustomization.yaml");
}

// --------------------------------------------- the checker checks itself --

/// The environment provider reads values as figment's `Env` does, and refuses what
/// `deny_unknown_fields` refuses: the property this whole file relies on.
#[test]
fn env_list_loads_like_figment_env() {
    let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    let config = load_config(
        "self-test",
        None,
        &env(&[
            ("QUIS_SERVICES__ECHO__LISTEN", "0.0.0.0:8089"),
            ("quis_gateway__upstreams__echo", r#"["http://echo:8089", "http://echo-2:8089"]"#),
            ("QUIS_GATEWAY__MAX_MESSAGE_BYTES", "2048"),
            ("POSTGRES_PASSWORD", "ignored: no prefix"),
        ]),
    )
    .expect("a valid environment loads");
    assert_eq!(config.services["echo"].listen, "0.0.0.0:8089".parse().expect("addr"));
    assert_eq!(config.gateway.upstreams["echo"], ["http://echo:8089", "http://echo-2:8089"]);
    assert_eq!(config.gateway.max_message_bytes, 2048);

    for bad in [
        ("QUIS_SERVICES__ECHO__LISTNE", "0.0.0.0:7409"),
        ("QUIS_LOG_FORMAT", "json"),
        ("QUIS_GATEWAY__UPSTREAM__ECHO", r#"["http://echo:7409"]"#),
        ("QUIS_SERVICES__ECHO__LISTEN", "not an address"),
        ("QUIS_AUTH____ISSUER", "x"),
    ] {
        let err = load_config("self-test", None, &env(&[bad])).expect_err(&format!("{bad:?} must not load"));
        assert!(err.contains(bad.0), "the error names the variable {}: {err}", bad.0);
    }
}

#[test]
fn compose_interpolation_and_ports_parse() {
    assert_eq!(interpolate("a${X:-b}c$$d").as_deref(), Ok("abc$d"));
    assert!(interpolate("${X}").is_err());
    assert_eq!(
        compose_port("t", &serde_yaml::Value::from("127.0.0.1:7400:7400")),
        Ok((Some("127.0.0.1".into()), Some(7400), 7400))
    );
    assert_eq!(compose_port("t", &serde_yaml::Value::from("8080:7400/tcp")), Ok((None, Some(8080), 7400)));
    assert_eq!(parse_url("postgres://u:p@db:5432/x?a=b"), Some(("postgres".into(), "db".into(), Some(5432))));
}

#[test]
fn k8s_env_expansion_and_key_helpers() {
    let defined = vec![("VKEY".to_string(), "w+01020304+BAAA".to_string())];
    assert_eq!(
        expand_k8s_refs(r#"[{vkey = "$(VKEY)"}]"#, &defined),
        (r#"[{vkey = "w+01020304+BAAA"}]"#.into(), vec![])
    );
    assert_eq!(expand_k8s_refs("$$(VKEY) $5", &defined), ("$(VKEY) $5".into(), vec![]));
    assert_eq!(expand_k8s_refs("$(LATER)", &defined), ("$(LATER)".into(), vec!["LATER".to_string()]));
    assert_eq!(
        vkey_name("quis.local/witness+033c1b5e+BAUzZMQHSfLoyOc45PPD7oA5vVvCRj81mgA6/fYNtfg/"),
        Some("quis.local/witness")
    );
    assert_eq!(vkey_name("quis.local/witness+033c1b5"), None);
    assert_eq!(vkey_name(VALUE_FROM_PLACEHOLDER), None);
    assert_eq!(sqlite_path("sqlite:///var/lib/w/witness.db?mode=rwc"), Some(PathBuf::from("/var/lib/w/witness.db")));
    assert_eq!(sqlite_path("postgres://db/quis"), None);
    // The witness's logs and the ledger's witnesses, as the manifests write them, load.
    let config = load_config(
        "self-test",
        None,
        &[
            ("QUIS_WITNESS__LOGS".into(), r#"{"quis.local/ledger" = ["quis.local/ledger+90f13069+AfD4"]}"#.into()),
            ("QUIS_LEDGER__WITNESSES".into(), r#"[{url = "http://witness:7403", vkey = "k"}]"#.into()),
            ("QUIS_LEDGER__WITNESS_QUORUM".into(), "1".into()),
        ],
    )
    .expect("loads");
    assert_eq!(config.witness.logs["quis.local/ledger"], ["quis.local/ledger+90f13069+AfD4"]);
    assert_eq!(config.ledger.witnesses[0].url, "http://witness:7403");
}
