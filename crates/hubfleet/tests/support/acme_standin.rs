//! A STAND-IN ACME server (RFC 8555), for tests only: no real ACME server (Let's Encrypt, or
//! a local Pebble) can be reached from the test machines, so this one plays its part, enough for
//! instant-acme, the client the hub uses.
//!
//! It speaks HTTPS with a certificate from a test CA, and does what a real server does with a
//! client's requests: nonces (each used once), JWS signatures checked (ES256, against the
//! account's JWK), accounts, orders, authorizations with an HTTP-01 challenge that it validates
//! by really fetching `http://<host>:<port>/.well-known/acme-challenge/<token>` from the hub and
//! comparing the key authorization (token "." the account key's RFC 7638 thumbprint), then
//! finalize with a CSR that the test CA signs, and the certificate download. Host names are
//! looked up as 127.0.0.1 (in place of DNS), on `http01_port` (in place of port 80).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

use super::test_ca::TestCa;

/// What the stand-in does, and what it saw.
pub struct AcmeStandIn {
    /// `https://localhost:<port>/directory`.
    pub directory: String,
    /// The CA that signs its own TLS certificate and the certificates it issues: what the hub
    /// must trust (`SSL_CERT_FILE`), and clients of the hub.
    pub ca_pem: String,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AcmeStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Db {
    nonces: HashSet<String>,
    /// account id → JWK
    accounts: HashMap<String, Value>,
    orders: HashMap<String, Order>,
    authzs: HashMap<String, Authz>,
    certs: HashMap<String, String>,
    next_id: u64,
    /// Requests seen, by endpoint: `new-account`, `new-order`, `finalize`, `validation`.
    counts: HashMap<&'static str, usize>,
}

struct Order {
    account: String,
    status: &'static str,
    names: Vec<String>,
    authzs: Vec<String>,
    cert: Option<String>,
    error: Option<Value>,
}

struct Authz {
    order: String,
    name: String,
    status: &'static str,
    token: String,
    challenge_status: &'static str,
    error: Option<Value>,
}

struct Shared {
    base: String,
    ca: TestCa,
    http01_port: u16,
    lifetime: Duration,
    db: Mutex<Db>,
}

impl Db {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("{}{}", self.next_id, uuid::Uuid::new_v4().simple())
    }

    fn nonce(&mut self) -> String {
        let nonce = B64.encode(uuid::Uuid::new_v4().as_bytes());
        self.nonces.insert(nonce.clone());
        nonce
    }
}

impl AcmeStandIn {
    /// Start on a free port. Issued certificates are valid for `lifetime` from their issuance;
    /// challenges are fetched from `127.0.0.1:<http01_port>`.
    pub async fn start(http01_port: u16, lifetime: Duration) -> AcmeStandIn {
        let ca = TestCa::new("hubfleet test ACME CA");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("https://localhost:{port}");
        let tls_leaf = ca.leaf(&["localhost"], Duration::from_secs(86_400));
        let ca_pem = ca.cert_pem.clone();
        let state = Arc::new(Shared {
            base: base.clone(),
            ca,
            http01_port,
            lifetime,
            db: Mutex::new(Db::default()),
        });
        let app = Router::new()
            .route("/directory", get(directory))
            .route("/new-nonce", get(new_nonce).head(new_nonce))
            .route("/new-account", post(new_account))
            .route("/new-order", post(new_order))
            .route("/order/{id}", post(order))
            .route("/authz/{id}", post(authz))
            .route("/chall/{id}", post(challenge))
            .route("/finalize/{id}", post(finalize))
            .route("/cert/{id}", post(certificate))
            .with_state(state.clone());
        let task = tokio::spawn(serve_tls(listener, tls_leaf, app));
        AcmeStandIn {
            directory: format!("{base}/directory"),
            ca_pem,
            state,
            task,
        }
    }

    /// How many requests of a kind it has seen (`new-account`, `new-order`, `finalize`,
    /// `validation` for challenge fetches).
    pub fn count(&self, what: &str) -> usize {
        let db = self.state.db.lock().unwrap();
        db.counts.get(what).copied().unwrap_or(0)
    }
}

async fn serve_tls(listener: tokio::net::TcpListener, leaf: super::test_ca::Leaf, app: Router) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// A response with a fresh nonce, as every ACME response carries.
fn reply(st: &Shared, status: StatusCode, body: Value, location: Option<String>) -> Response {
    let nonce = st.db.lock().unwrap().nonce();
    let mut resp = (status, axum::Json(body)).into_response();
    let headers = resp.headers_mut();
    headers.insert("replay-nonce", HeaderValue::from_str(&nonce).unwrap());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(location) = location {
        headers.insert(header::LOCATION, HeaderValue::from_str(&location).unwrap());
    }
    resp
}

fn problem(st: &Shared, status: StatusCode, kind: &str, detail: &str) -> Response {
    let mut resp = reply(
        st,
        status,
        json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail, "status": status.as_u16()}),
        None,
    );
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}

async fn directory(State(st): State<Arc<Shared>>) -> Response {
    let b = &st.base;
    axum::Json(json!({
        "newNonce": format!("{b}/new-nonce"),
        "newAccount": format!("{b}/new-account"),
        "newOrder": format!("{b}/new-order"),
        "revokeCert": format!("{b}/revoke-cert"),
        "keyChange": format!("{b}/key-change"),
        "meta": {"termsOfService": format!("{b}/terms")},
    }))
    .into_response()
}

async fn new_nonce(State(st): State<Arc<Shared>>) -> Response {
    let nonce = st.db.lock().unwrap().nonce();
    (
        StatusCode::OK,
        [
            ("replay-nonce", nonce),
            (header::CACHE_CONTROL.as_str(), "no-store".to_owned()),
        ],
    )
        .into_response()
}

/// A verified JWS request: its payload (None for POST-as-GET) and the account (for `kid`
/// requests) or the JWK (for new-account).
struct Signed {
    payload: Option<Value>,
    account: Option<String>,
    jwk: Value,
}

fn b64_json(s: &str) -> Result<Value, String> {
    let bytes = B64.decode(s).map_err(|e| format!("base64: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("JSON: {e}"))
}

/// RFC 7638 thumbprint of an EC JWK.
fn thumbprint(jwk: &Value) -> String {
    let canonical = format!(
        r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
        jwk["crv"].as_str().unwrap_or_default(),
        jwk["kty"].as_str().unwrap_or_default(),
        jwk["x"].as_str().unwrap_or_default(),
        jwk["y"].as_str().unwrap_or_default()
    );
    B64.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

/// Check nonce, URL and ES256 signature of a JWS body sent to `url`.
fn verify(st: &Shared, url: &str, body: &[u8]) -> Result<Signed, Box<Response>> {
    let bad =
        |kind: &str, detail: String| Box::new(problem(st, StatusCode::BAD_REQUEST, kind, &detail));
    let jws: Value =
        serde_json::from_slice(body).map_err(|e| bad("malformed", format!("not JSON: {e}")))?;
    let (Some(protected_b64), Some(payload_b64), Some(signature_b64)) = (
        jws["protected"].as_str(),
        jws["payload"].as_str(),
        jws["signature"].as_str(),
    ) else {
        return Err(bad("malformed", "not a flattened JWS".into()));
    };
    let protected = b64_json(protected_b64).map_err(|e| bad("malformed", e))?;
    if protected["alg"] != "ES256" {
        return Err(bad("badSignatureAlgorithm", "only ES256".into()));
    }
    if protected["url"] != url {
        return Err(bad(
            "unauthorized",
            format!("signed for {} but sent to {url}", protected["url"]),
        ));
    }
    let nonce = protected["nonce"].as_str().unwrap_or_default();
    if !st.db.lock().unwrap().nonces.remove(nonce) {
        return Err(bad("badNonce", "unknown or used nonce".into()));
    }
    let (jwk, account) = match (protected.get("jwk"), protected["kid"].as_str()) {
        (Some(jwk), None) => (jwk.clone(), None),
        (None, Some(kid)) => {
            let id = kid.rsplit('/').next().unwrap_or_default().to_owned();
            let db = st.db.lock().unwrap();
            let Some(jwk) = db.accounts.get(&id) else {
                return Err(Box::new(problem(
                    st,
                    StatusCode::BAD_REQUEST,
                    "accountDoesNotExist",
                    "no such account",
                )));
            };
            (jwk.clone(), Some(id))
        }
        _ => return Err(bad("malformed", "exactly one of jwk and kid".into())),
    };
    let (Ok(x), Ok(y)) = (
        B64.decode(jwk["x"].as_str().unwrap_or_default()),
        B64.decode(jwk["y"].as_str().unwrap_or_default()),
    ) else {
        return Err(bad("badPublicKey", "bad JWK".into()));
    };
    let mut point = vec![4u8];
    point.extend(x);
    point.extend(y);
    let signature = B64
        .decode(signature_b64)
        .map_err(|e| bad("malformed", e.to_string()))?;
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    key.verify(
        format!("{protected_b64}.{payload_b64}").as_bytes(),
        &signature,
    )
    .map_err(|_| {
        Box::new(problem(
            st,
            StatusCode::FORBIDDEN,
            "unauthorized",
            "bad JWS signature",
        ))
    })?;
    let payload = if payload_b64.is_empty() {
        None
    } else {
        Some(b64_json(payload_b64).map_err(|e| bad("malformed", e))?)
    };
    Ok(Signed {
        payload,
        account,
        jwk,
    })
}

fn count(st: &Shared, what: &'static str) {
    *st.db.lock().unwrap().counts.entry(what).or_default() += 1;
}

async fn new_account(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let url = format!("{}/new-account", st.base);
    let signed = match verify(&st, &url, &body) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    count(&st, "new-account");
    let payload = signed.payload.unwrap_or_default();
    if payload["termsOfServiceAgreed"] != true {
        return problem(
            &st,
            StatusCode::FORBIDDEN,
            "userActionRequired",
            "the terms of service must be agreed to",
        );
    }
    let id = {
        let mut db = st.db.lock().unwrap();
        let id = db.id();
        db.accounts.insert(id.clone(), signed.jwk);
        id
    };
    reply(
        &st,
        StatusCode::CREATED,
        json!({"status": "valid", "contact": payload["contact"], "orders": format!("{}/orders/{id}", st.base)}),
        Some(format!("{}/acct/{id}", st.base)),
    )
}

fn order_json(st: &Shared, id: &str, order: &Order) -> Value {
    let b = &st.base;
    let mut v = json!({
        "status": order.status,
        "expires": "2099-01-01T00:00:00Z",
        "identifiers": order.names.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>(),
        "authorizations": order.authzs.iter().map(|a| format!("{b}/authz/{a}")).collect::<Vec<_>>(),
        "finalize": format!("{b}/finalize/{id}"),
    });
    if let Some(cert) = &order.cert {
        v["certificate"] = json!(format!("{b}/cert/{cert}"));
    }
    if let Some(error) = &order.error {
        v["error"] = error.clone();
    }
    v
}

fn challenge_json(st: &Shared, id: &str, a: &Authz) -> Value {
    let mut v = json!({
        "type": "http-01",
        "url": format!("{}/chall/{id}", st.base),
        "token": a.token,
        "status": a.challenge_status,
    });
    if let Some(error) = &a.error {
        v["error"] = error.clone();
    }
    v
}

async fn new_order(State(st): State<Arc<Shared>>, body: Bytes) -> Response {
    let url = format!("{}/new-order", st.base);
    let signed = match verify(&st, &url, &body) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    count(&st, "new-order");
    let Some(account) = signed.account else {
        return problem(&st, StatusCode::BAD_REQUEST, "malformed", "use kid");
    };
    let names: Vec<String> = signed.payload.unwrap_or_default()["identifiers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["value"].as_str().map(str::to_owned))
        .collect();
    if names.is_empty() {
        return problem(&st, StatusCode::BAD_REQUEST, "malformed", "no identifiers");
    }
    let mut db = st.db.lock().unwrap();
    let id = db.id();
    let mut authzs = Vec::new();
    for name in &names {
        let authz_id = db.id();
        let token = B64.encode(uuid::Uuid::new_v4().as_bytes());
        db.authzs.insert(
            authz_id.clone(),
            Authz {
                order: id.clone(),
                name: name.clone(),
                status: "pending",
                token,
                challenge_status: "pending",
                error: None,
            },
        );
        authzs.push(authz_id);
    }
    let order = Order {
        account,
        status: "pending",
        names,
        authzs,
        cert: None,
        error: None,
    };
    let body = order_json(&st, &id, &order);
    db.orders.insert(id.clone(), order);
    drop(db);
    reply(
        &st,
        StatusCode::CREATED,
        body,
        Some(format!("{}/order/{id}", st.base)),
    )
}

async fn order(State(st): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let url = format!("{}/order/{id}", st.base);
    if let Err(resp) = verify(&st, &url, &body) {
        return *resp;
    }
    let db = st.db.lock().unwrap();
    let Some(order) = db.orders.get(&id) else {
        drop(db);
        return problem(&st, StatusCode::NOT_FOUND, "malformed", "no such order");
    };
    let body = order_json(&st, &id, order);
    drop(db);
    reply(&st, StatusCode::OK, body, None)
}

async fn authz(State(st): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let url = format!("{}/authz/{id}", st.base);
    if let Err(resp) = verify(&st, &url, &body) {
        return *resp;
    }
    let db = st.db.lock().unwrap();
    let Some(a) = db.authzs.get(&id) else {
        drop(db);
        return problem(
            &st,
            StatusCode::NOT_FOUND,
            "malformed",
            "no such authorization",
        );
    };
    let body = json!({
        "status": a.status,
        "expires": "2099-01-01T00:00:00Z",
        "identifier": {"type": "dns", "value": a.name},
        "challenges": [challenge_json(&st, &id, a)],
    });
    drop(db);
    reply(&st, StatusCode::OK, body, None)
}

/// The client says it is ready: validate in the background, as a real server does.
async fn challenge(State(st): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let url = format!("{}/chall/{id}", st.base);
    let signed = match verify(&st, &url, &body) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let mut db = st.db.lock().unwrap();
    let Some(a) = db.authzs.get_mut(&id) else {
        drop(db);
        return problem(&st, StatusCode::NOT_FOUND, "malformed", "no such challenge");
    };
    let start = a.challenge_status == "pending";
    if start {
        a.challenge_status = "processing";
    }
    let (name, token) = (a.name.clone(), a.token.clone());
    let body = challenge_json(&st, &id, a);
    drop(db);
    if start {
        let expected = format!("{token}.{}", thumbprint(&signed.jwk));
        tokio::spawn(validate(st.clone(), id, name, token, expected));
    }
    reply(&st, StatusCode::OK, body, None)
}

/// HTTP-01: fetch the key authorization from the host (here: 127.0.0.1 on `http01_port`).
async fn validate(st: Arc<Shared>, id: String, name: String, token: String, expected: String) {
    count(&st, "validation");
    let addr = SocketAddr::from(([127, 0, 0, 1], st.http01_port));
    let client = reqwest::Client::builder()
        .resolve(&name, addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!(
        "http://{name}:{}/.well-known/acme-challenge/{token}",
        st.http01_port
    );
    let outcome = match client.get(&url).send().await {
        Err(e) => {
            // The innermost cause, as Let's Encrypt reports it ("Connection refused").
            let mut cause: &dyn std::error::Error = &e;
            while let Some(inner) = cause.source() {
                cause = inner;
            }
            Err(("connection", format!("{addr}: Fetching {url}: {cause}")))
        }
        Ok(resp) if resp.status() != 200 => Err((
            "unauthorized",
            format!(
                "{addr}: Invalid response from {url}: {}",
                resp.status().as_u16()
            ),
        )),
        Ok(resp) => {
            let text = resp.text().await.unwrap_or_default();
            if text.trim() == expected {
                Ok(())
            } else {
                Err((
                    "unauthorized",
                    format!("The key authorization file from the server did not match this challenge: {text:?}"),
                ))
            }
        }
    };
    let mut db = st.db.lock().unwrap();
    let Some(a) = db.authzs.get_mut(&id) else {
        return;
    };
    let order_id = a.order.clone();
    match outcome {
        Ok(()) => {
            a.challenge_status = "valid";
            a.status = "valid";
        }
        Err((kind, detail)) => {
            a.challenge_status = "invalid";
            a.status = "invalid";
            a.error = Some(
                json!({"type": format!("urn:ietf:params:acme:error:{kind}"), "detail": detail, "status": 400}),
            );
        }
    }
    let statuses: Vec<&str> = db
        .orders
        .get(&order_id)
        .map(|o| o.authzs.clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| db.authzs.get(a).map(|a| a.status))
        .collect();
    if let Some(order) = db.orders.get_mut(&order_id) {
        if statuses.contains(&"invalid") {
            order.status = "invalid";
        } else if statuses.iter().all(|s| *s == "valid") {
            order.status = "ready";
        }
    }
}

async fn finalize(State(st): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    let url = format!("{}/finalize/{id}", st.base);
    let signed = match verify(&st, &url, &body) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    count(&st, "finalize");
    let csr_b64 = signed.payload.unwrap_or_default()["csr"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let Ok(csr) = B64.decode(&csr_b64) else {
        return problem(
            &st,
            StatusCode::BAD_REQUEST,
            "badCSR",
            "CSR is not base64url",
        );
    };
    {
        let db = st.db.lock().unwrap();
        let Some(order) = db.orders.get(&id) else {
            drop(db);
            return problem(&st, StatusCode::NOT_FOUND, "malformed", "no such order");
        };
        if order.status != "ready" || Some(&order.account) != signed.account.as_ref() {
            drop(db);
            return problem(
                &st,
                StatusCode::FORBIDDEN,
                "orderNotReady",
                "order is not ready",
            );
        }
    }
    let chain = match st.ca.sign_csr(&csr, st.lifetime) {
        Ok(chain) => chain,
        Err(e) => return problem(&st, StatusCode::BAD_REQUEST, "badCSR", &e),
    };
    let mut db = st.db.lock().unwrap();
    let cert_id = db.id();
    db.certs.insert(cert_id.clone(), chain);
    let order = db.orders.get_mut(&id).unwrap();
    order.status = "valid";
    order.cert = Some(cert_id);
    let body = order_json(&st, &id, order);
    drop(db);
    reply(
        &st,
        StatusCode::OK,
        body,
        Some(format!("{}/order/{id}", st.base)),
    )
}

async fn certificate(
    State(st): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let url = format!("{}/cert/{id}", st.base);
    if let Err(resp) = verify(&st, &url, &body) {
        return *resp;
    }
    let chain = st.db.lock().unwrap().certs.get(&id).cloned();
    let Some(chain) = chain else {
        return problem(
            &st,
            StatusCode::NOT_FOUND,
            "malformed",
            "no such certificate",
        );
    };
    let nonce = st.db.lock().unwrap().nonce();
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE.as_str(),
                "application/pem-certificate-chain".to_owned(),
            ),
            ("replay-nonce", nonce),
        ],
        chain,
    )
        .into_response()
}
