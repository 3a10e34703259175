//! tokengate: a horizontally scaled, stateless JWT session service for NGINX
//! `auth_request`. Every replica is identical; all session state lives in
//! Redis, so a logout, refresh or idle timeout on one replica holds on all.
//!
//! # Layout
//! Layers, lowest first; a module imports only from layers below it
//! (`tests/layering.rs` holds it to that):
//! - [`config`] — settings as plain data: defaults, `config.yml`,
//!   `TOKENGATE__*`, checked for shape; [`time`] — the one clock.
//! - [`tokens`] — signing keys, access JWTs, opaque refresh tokens, API-token
//!   format, scopes; [`proxies`] — the client's address behind trusted
//!   proxies; [`verifier`] — the bounded argon2 pool; [`telemetry`] — logs.
//! - [`store`] — the atomic session operations, on Redis (one Lua script
//!   each) or in memory.
//! - [`db`] — the durable records (users, stored clients, API tokens, the
//!   outbox), on SQLite or PostgreSQL.
//! - [`throttle`] — failed credential checks counted per id and address;
//!   [`events`] — the outbox relay to the Redis stream `tg:events`.
//! - [`clients`] — client authentication (argon2id; HTTP Basic or form), from
//!   `config.yml` and the database.
//! - [`oauth`] — OAuth 2.0 client policies; [`admin`] — the admin token.
//! - [`session`] — the session rules: login, rotation with grace, logout,
//!   authenticate, the local cache; [`users`] — registration and password
//!   login; [`api_tokens`] — API tokens for services.
//! - [`metrics`] — Prometheus counters and histograms.
//! - [`service`] — **the one door**: [`service::Gate`] answers every use case
//!   (log in, authenticate, refresh, OAuth, admin, health) in the words of the
//!   domain, with one error type, for every transport.
//! - [`http`] and [`grpc`] — thin transports: parse, call the `Gate`, map its
//!   answer and [`service::ServiceError`] to the wire.
//! - [`server`] — listeners, connections, graceful shutdown.
//! - [`app`] — builds the `Gate` from the settings, once.
//! - [`ops`] — what each command does (serve, `migrate`, `client`, `token`,
//!   `hash-secret`, `healthcheck`); [`cli`] — the command line (clap).
//!
//! A request flows one way: `server` → `http`/`grpc` → `service` →
//! `session`/`users`/`api_tokens` → `store`/`db`.

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
pub mod session_feed;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod time;
pub mod tokens;
pub mod users;
pub mod verifier;
