//! Integration tests: real servers on loopback, several replicas where the
//! SPEC talks about replicas. One binary, one module per SPEC topic.

#[path = "../support/mod.rs"]
mod support;

mod helpers;

mod api_token_misses;
mod api_tokens;
mod bounded_state;
mod browser_sessions;
mod durable_store;
mod endpoints;
mod event_log;
mod faults;
mod fd_budget;
mod floods;
mod forgery;
mod gate_headers;
mod grpc;
mod grpc_interop;
mod grpc_limits;
mod identities;
mod interop;
mod keys;
mod listeners;
mod local_cache;
mod lockout;
mod oauth;
mod openapi;
mod pending_revocations;
mod process;
mod redis_cluster;
mod redis_cluster_harness;
mod redis_costs;
mod redis_tls;
mod rotation_rules;
mod sentinel;
mod session_events;
mod sessions;
mod slow_clients;
mod stored_clients;
mod totp;
mod totp_store;
mod user_sessions;
mod users;
