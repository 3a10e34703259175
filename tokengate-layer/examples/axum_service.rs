//! An axum service protected by tokengate-layer: tokens are verified
//! locally (no call to tokengate per request), a logged-out session's
//! tokens are refused within milliseconds through the revocation feed, and
//! API tokens (`tg_live_…`) are accepted too.
//!
//! - `GET /orders`: any valid token; answers who called (the access token's
//!   `sub`, or the API token's name).
//! - `POST /orders`: also needs the scope `orders:write` (else `403
//!   insufficient_scope`).
//!
//! Configuration (environment):
//!
//! | variable | default | |
//! |---|---|---|
//! | `LISTEN` | `127.0.0.1:3000` | where this service listens |
//! | `TOKENGATE_URL` | `http://127.0.0.1:8080` | tokengate's public URL (`/.well-known/jwks.json`, `/authenticate`, `/auth/validate`) |
//! | `TOKENGATE_ADMIN_URL` | `http://127.0.0.1:9090` | a replica's admin listener (`/events/sessions`) |
//! | `TOKENGATE_SECRET` | unset | the HS256 secret shared with tokengate; unset: the keys of the JWKS |
//! | `TOKENGATE_WATCH_TOKEN` | required | an API token with the scope `sessions:watch` |
//!
//! ## Against the native cluster (`scripts/cluster`)
//!
//! ```sh
//! # 1. A cluster in the background; its ports are in cluster.env.
//! scripts/cluster up --dir /tmp/tg
//! . /tmp/tg/cluster.env
//!
//! # 2. An API token for the revocation feed (the CLI on the cluster's database).
//! export TOKENGATE_WATCH_TOKEN=$(cd "$TG_DIR" && \
//!   TOKENGATE__DATABASE__URL="$TG_DATABASE_URL" TOKENGATE__CACHE__URL="$TG_REDIS_URL" \
//!   TOKENGATE__AUTH__SECRET="$TG_SECRET" \
//!   "$OLDPWD"/target/release/tokengate token create orders-service --scopes sessions:watch --json \
//!   | jq -r .token)
//!
//! # 3. This service: public URL through nginx, the feed from replica 0's admin listener,
//! #    HS256 with the cluster's secret (its replicas sign with it).
//! export TOKENGATE_URL="$TG_URL"
//! export TOKENGATE_ADMIN_URL="http://127.0.0.1:${TG_REPLICA_ADMIN_PORTS%% *}"
//! export TOKENGATE_SECRET="$TG_SECRET"
//! cargo run -p tokengate-layer --features axum --example axum_service
//!
//! # 4. In another shell (with /tmp/tg/cluster.env sourced):
//! ACCESS=$(curl -s "$TG_URL"/login -H 'Content-Type: application/json' -d '{"user_id": 42}' | jq -r .access)
//! curl -s 127.0.0.1:3000/orders -H "Authorization: Bearer $ACCESS"             # you are 42
//! curl -si 127.0.0.1:3000/orders                                               # 401
//! curl -si -X POST 127.0.0.1:3000/orders -H "Authorization: Bearer $ACCESS"    # 403 insufficient_scope
//!
//! # 5. End the session: its token is refused at once, though it has not expired.
//! curl -s -X POST "$TG_URL"/logout -H "Authorization: Bearer $ACCESS"
//! curl -si 127.0.0.1:3000/orders -H "Authorization: Bearer $ACCESS"            # 401, the session has ended
//!
//! # An API token with orders:write may POST (make it as in step 2):
//! #   tokengate token create billing --scopes orders:write
//! curl -si -X POST 127.0.0.1:3000/orders -H "Authorization: Bearer $BILLING"   # 201
//!
//! scripts/cluster down --dir /tmp/tg
//! ```
//!
//! Against a single tokengate on its defaults, only `TOKENGATE_WATCH_TOKEN`
//! (and `TOKENGATE_SECRET`, if it signs with HS256) need setting.

mod common;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokengate_layer::{ApiTokenClaims, Claims};

use std::process::ExitCode;

use common::{BoxError, Tokengate, listen_addr};

/// Who called: an access token's user, or an API token's service.
fn caller(access: Option<Claims>, api: Option<ApiTokenClaims>) -> String {
    match (access, api) {
        (Some(claims), _) => format!("user {}", claims.sub),
        (None, Some(token)) => format!("API token {:?}", token.name),
        // Only on a route the layer does not cover.
        (None, None) => "nobody".to_owned(),
    }
}

async fn list_orders(access: Option<Claims>, api: Option<ApiTokenClaims>) -> String {
    format!("orders of {}\n", caller(access, api))
}

async fn create_order(access: Option<Claims>, api: Option<ApiTokenClaims>) -> (StatusCode, String) {
    (
        StatusCode::CREATED,
        format!("order created by {}\n", caller(access, api)),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    common::exit("axum_service", run().await)
}

async fn run() -> Result<(), BoxError> {
    let addr = listen_addr("127.0.0.1:3000")?;
    let tokengate = Tokengate::from_env().await?;

    // One layer per method: any valid token reads, orders:write writes.
    let orders = get(list_orders)
        .route_layer(tokengate.layer())
        .merge(post(create_order).route_layer(tokengate.layer().require_scopes(["orders:write"])?));
    let app = Router::new().route("/orders", orders);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    eprintln!("listening on http://{addr} (GET/POST /orders)");
    axum::serve(listener, app).await?;
    Ok(())
}
