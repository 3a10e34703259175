//! Integration tests: real servers on loopback, several replicas where the
//! SPEC talks about replicas. One binary, one module per SPEC topic.

#[path = "../support/mod.rs"]
mod support;

mod helpers;

mod api_tokens;
mod durable_store;
mod endpoints;
mod faults;
mod fd_budget;
mod floods;
mod forgery;
mod gate_headers;
mod grpc;
mod grpc_interop;
mod grpc_limits;
mod interop;
mod keys;
mod local_cache;
mod oauth;
mod process;
mod redis_costs;
mod redis_tls;
mod rotation_rules;
mod sentinel;
mod sessions;
mod slow_clients;
mod stored_clients;
mod user_sessions;
mod users;
