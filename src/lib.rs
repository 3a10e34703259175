//! tokengate: a horizontally scaled, stateless JWT session service for NGINX
//! `auth_request`. Every replica is identical; all session state lives in
//! Redis, so a logout, refresh or idle timeout on one replica holds on all.
//!
//! # Layout
//! - [`config`] — settings from defaults, `config.yml` and `TOKENGATE__*`.
//! - [`telemetry`] — tracing subscriber (text or JSON).
//! - [`app`] — everything built once at start-up and shared by requests.
//! - [`server`] — accept loop, connections, graceful shutdown.
//! - [`http`] — routing, one module per endpoint, the error → response map.
//! - [`session`] — the rules: login, rotation with grace, logout, authenticate.
//! - [`tokens`] — signing keys, access JWTs and opaque refresh tokens.
//! - [`clients`] — client authentication (argon2id + HTTP Basic or form), from
//!   `config.yml` and from the database (re-read every `database.clients_refresh`).
//! - [`throttle`] — failed credential checks counted per id and address.
//! - [`verifier`] — the bounded pool every argon2 verification runs in.
//! - [`proxies`] — the client's address behind trusted proxies.
//! - [`oauth`] — OAuth 2.0 client policies and scopes.
//! - [`metrics`] — Prometheus counters and histograms.
//! - [`store`] — the atomic session operations, on Redis or in memory.
//! - [`users`] — registration and password login (SPEC §7).
//! - [`db`] — the durable records (users, stored clients, the outbox), on
//!   SQLite or PostgreSQL.
//! - [`events`] — the outbox relay to the Redis stream `tg:events`.
//! - [`grpc`] — `realchat.auth.v1.AuthApi` over tonic, beside `http`.
//! - [`cli`] — the command line (clap); [`ops`] — what each command does
//!   (serve, `migrate`, `client`, `token`, `hash-secret`, `healthcheck`),
//!   given plain data: `ops` never sees `cli`.
//!
//! Data flows one way: request → `http` → `session` → `store`, and for
//! accounts request → `http` → `users` → `db`.

pub mod admin;
pub mod api_tokens;
pub mod app;
pub mod cli;
pub mod clients;
pub mod config;
pub mod db;
pub mod events;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod oauth;
pub mod ops;
pub mod proxies;
pub mod server;
pub mod service;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod time;
pub mod tokens;
pub mod users;
pub mod verifier;
