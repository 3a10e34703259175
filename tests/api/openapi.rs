//! SPEC §12 `GET /openapi.json`: the document passes an independent
//! validator (openapi-spec-validator), and real answers of every public
//! endpoint — successes and failures — match what it documents for them:
//! the status is listed, the content type too, and a JSON body validates
//! against the response's schema with no property the schema leaves out
//! (`tests/interop/validate_openapi.py`). Every documented path is sampled.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};
use tokengate::config::SigningAlgorithm;

use crate::api_tokens::{admin_hash, create};
use crate::helpers::{Backend, Cluster, Pair, Replica};
use crate::interop::run_script;
use crate::keys::{KeyDir, use_keys};
use crate::oauth::{WORKER, with_clients};
use crate::support::client::{Reply, request, with_bearer};

/// One real answer, and the documented operation it answers.
struct Sample {
    /// The path as the document names it (`/sessions/{sid}`).
    path: &'static str,
    method: Method,
    reply: Reply,
}

impl Sample {
    fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "method": self.method.as_str().to_ascii_lowercase(),
            "status": self.reply.status.as_u16(),
            "content_type": self.reply.header("content-type"),
            "headers": self.reply.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&self.reply.body),
        })
    }
}

/// Collects answers of one replica, endpoint by endpoint.
struct Samples<'a> {
    replica: &'a Replica,
    taken: Vec<Sample>,
}

impl Samples<'_> {
    /// Sends `method path` with the headers and body given; keeps the reply
    /// under the documented `documented` path.
    async fn send(
        &mut self,
        documented: &'static str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let mut builder = request(method.clone(), path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let reply = self
            .replica
            .send(builder.body(Full::new(body)).unwrap())
            .await;
        self.taken.push(Sample {
            path: documented,
            method,
            reply: reply.clone(),
        });
        reply
    }

    async fn get(&mut self, path: &'static str) -> Reply {
        self.send(path, Method::GET, path, &[], Bytes::new()).await
    }

    async fn json(&mut self, path: &'static str, body: Value) -> Reply {
        let headers = [("content-type", "application/json")];
        let body = Bytes::from(serde_json::to_vec(&body).unwrap());
        self.send(path, Method::POST, path, &headers, body).await
    }

    async fn bearer(
        &mut self,
        documented: &'static str,
        method: Method,
        path: &str,
        token: &str,
    ) -> Reply {
        let authorization = format!("Bearer {token}");
        let headers = [("authorization", authorization.as_str())];
        self.send(documented, method, path, &headers, Bytes::new())
            .await
    }

    /// A form POST authenticated as `client` with HTTP Basic.
    async fn form(
        &mut self,
        path: &'static str,
        client: (&str, &str),
        params: &[(&str, &str)],
    ) -> Reply {
        self.form_at(path, path, client, params).await
    }

    /// [`Samples::form`] sent to `sent`, which the document names `path`.
    async fn form_at(
        &mut self,
        path: &'static str,
        sent: &str,
        client: (&str, &str),
        params: &[(&str, &str)],
    ) -> Reply {
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", client.0, client.1))
        );
        let headers = [
            ("authorization", basic.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        self.send(path, Method::POST, sent, &headers, body.into())
            .await
    }
}

/// Answers of every public endpoint, each status a client can easily
/// provoke: the evidence the document is checked against.
async fn sample_every_endpoint(replica: &Replica) -> Vec<Sample> {
    let mut s = Samples {
        replica,
        taken: Vec::new(),
    };
    s.get("/ping").await;
    s.get("/health").await;
    s.send("/health", Method::HEAD, "/health", &[], Bytes::new())
        .await;
    s.get("/.well-known/jwks.json").await;
    s.get("/.well-known/oauth-authorization-server").await;
    s.get("/openapi.json").await;

    // Accounts and sessions.
    let account = json!({"email": "ada@example.com", "password": "correct horse"});
    assert_eq!(s.json("/register", account.clone()).await.status, 201);
    s.json("/register", account.clone()).await; // 409
    s.json(
        "/register",
        json!({"email": "b@example.com", "password": "short"}),
    )
    .await;
    let password_login = s.json("/login", account).await;
    let ada = Pair::from_reply(&password_login);
    s.json(
        "/login",
        json!({"email": "ada@example.com", "password": "wrong password"}),
    )
    .await;
    let second = Pair::from_reply(&s.json("/login", json!({"user_id": "grace"})).await);
    let third = Pair::from_reply(&s.json("/login", json!({"user_id": "grace"})).await);
    s.json("/login", json!({"user_id": "token:x"})).await; // 400
    s.send("/login", Method::GET, "/login", &[], Bytes::new())
        .await; // 405
    let text = [("content-type", "text/plain")];
    s.send("/login", Method::POST, "/login", &text, "hi".into())
        .await; // 415
    let huge = Bytes::from(vec![b' '; 17 * 1024]);
    s.send("/login", Method::POST, "/login", &[], huge).await; // 413
    let refreshed = Pair::from_reply(&s.json("/refresh", json!({"refresh": third.refresh})).await);
    s.json("/refresh", json!({"refresh": "not-a-refresh-token"}))
        .await; // 401
    s.bearer("/sessions", Method::GET, "/sessions", &refreshed.access)
        .await;
    s.get("/sessions").await; // 401
    let end = format!("/sessions/{}", second.session_id);
    s.bearer("/sessions/{sid}", Method::DELETE, &end, &refreshed.access)
        .await;
    s.bearer("/sessions/{sid}", Method::DELETE, &end, &refreshed.access)
        .await; // 404

    // The gate, with a session and with an API token.
    let api = create(replica, json!({"name": "svc", "scopes": ["read"]})).await;
    for method in [Method::GET, Method::HEAD, Method::POST] {
        s.bearer("/authenticate", method, "/authenticate", &ada.access)
            .await;
    }
    s.bearer("/authenticate", Method::GET, "/authenticate", &api.token)
        .await;
    let scoped = "/authenticate?scope=write";
    s.bearer("/authenticate", Method::GET, scoped, &api.token)
        .await; // 403
    s.get("/authenticate").await; // 401
    s.bearer(
        "/authenticate",
        Method::GET,
        "/authenticate",
        &second.access,
    )
    .await; // 401
    s.json("/auth/validate", json!({"token": api.token})).await;
    let write = json!({"token": api.token, "required_scopes": ["write"]});
    s.json("/auth/validate", write).await;
    s.json("/auth/validate", json!({"token": "tg_live_nope"}))
        .await;
    s.json("/oauth/verify", json!({"token": ada.access})).await;
    s.json("/oauth/verify", json!({"token": "nope"})).await;

    // OAuth.
    let granted = s
        .form(
            "/oauth/token",
            WORKER,
            &[("grant_type", "client_credentials"), ("scope", "jobs")],
        )
        .await
        .json();
    let client_access = granted["access_token"].as_str().unwrap().to_owned();
    let client_refresh = granted["refresh_token"].as_str().unwrap().to_owned();
    let cc = [("grant_type", "client_credentials")];
    s.form_at("/oauth/token", "/token", WORKER, &cc).await; // the alias
    s.form(
        "/oauth/token",
        ("worker", "wrong"),
        &[("grant_type", "client_credentials")],
    )
    .await; // 401
    s.form("/oauth/token", WORKER, &[("grant_type", "password")])
        .await; // 400
    for token in [
        client_access.as_str(),
        &client_refresh,
        &api.token,
        "garbage",
    ] {
        s.form("/oauth/introspect", WORKER, &[("token", token)])
            .await;
    }
    let rotated = s
        .form(
            "/oauth/token",
            WORKER,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &client_refresh),
            ],
        )
        .await
        .json();
    let rotated_refresh = rotated["refresh_token"].as_str().unwrap().to_owned();
    s.form("/oauth/revoke", WORKER, &[("token", &rotated_refresh)])
        .await;

    // Logouts: one session, then every session of a user.
    s.bearer("/logout", Method::POST, "/logout", &ada.access)
        .await;
    s.json(
        "/logout",
        json!({"refresh": refreshed.refresh, "all": true}),
    )
    .await;
    s.json("/logout", json!({})).await; // 400

    s.taken
}

/// The names of an object's fields.
fn keys(value: &Value) -> BTreeSet<String> {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    object.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_answer_matches_the_document() {
    let dir = KeyDir::new();
    let keys = vec![dir.generate("ed", SigningAlgorithm::EdDSA)];
    let mut c = Cluster::start_with(Backend::Redis, 1, |s| {
        use_keys(keys)(s);
        with_clients(s);
        s.admin.token_hash = admin_hash().to_owned();
    })
    .await;
    let base = format!("http://{}", c.a().addr);
    let mut samples = sample_every_endpoint(c.a()).await;
    // The store gone: fail closed.
    c.redis_mut().kill();
    let mut s = Samples {
        replica: c.a(),
        taken: Vec::new(),
    };
    s.get("/health").await;
    s.json("/login", json!({"user_id": "grace"})).await;
    samples.extend(s.taken);
    let statuses = |path: &str| -> BTreeSet<u16> {
        let of_path = samples.iter().filter(|s| s.path == path);
        of_path.map(|s| s.reply.status.as_u16()).collect()
    };
    assert_eq!(statuses("/health"), BTreeSet::from([200, 503]));
    assert_eq!(
        statuses("/login"),
        BTreeSet::from([200, 400, 401, 405, 413, 415, 503])
    );

    let file =
        std::env::temp_dir().join(format!("tokengate-openapi-{}.json", uuid::Uuid::new_v4()));
    let listed = Value::Array(samples.iter().map(Sample::to_json).collect());
    std::fs::write(&file, serde_json::to_vec(&listed).unwrap()).unwrap();
    let out = run_script(
        "validate_openapi.py",
        vec![base, file.display().to_string()],
    )
    .await;
    let _ = std::fs::remove_file(&file);
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seen["openapi"], "3.1.0");
    assert_eq!(seen["checked"], samples.len());
    assert_eq!(
        seen["unsampled"],
        json!([]),
        "paths no answer was checked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_fields_are_the_fields_answered() {
    let c = Cluster::start_with(Backend::Memory, 1, with_clients).await;
    let reply = c.a().get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    let schema = |name: &str| keys(&doc["components"]["schemas"][name]["properties"]);

    let login = c.a().post_json("/login", &json!({"user_id": "ada"})).await;
    assert_eq!(keys(&login.json()), schema("TokenPairBody"));
    let pair = Pair::from_reply(&login);
    let listed = with_bearer(c.a().addr, Method::GET, "/sessions", &pair.access).await;
    let listed = listed.json();
    assert_eq!(keys(&listed), schema("SessionsBody"));
    assert_eq!(keys(&listed["sessions"][0]), schema("SessionBody"));
    let account = json!({"email": "ada@example.com", "password": "correct horse"});
    let registered = c.a().post_json("/register", &account).await.json();
    assert_eq!(keys(&registered), schema("RegisteredBody"));
    // Every optional field: a client with refresh tokens that asks a scope.
    let mut s = Samples {
        replica: c.a(),
        taken: Vec::new(),
    };
    let asked = [("grant_type", "client_credentials"), ("scope", "jobs")];
    let granted = s.form("/oauth/token", WORKER, &asked).await.json();
    assert_eq!(keys(&granted), schema("TokenBody"));
    // Ready: all but the fields of an outage.
    let health = c.a().get("/health").await.json();
    let outage = BTreeSet::from(["error".to_owned(), "error_description".to_owned()]);
    assert_eq!(keys(&health), &schema("HealthBody") - &outage);
}
