//! Test support shared by the test binaries (and the native cluster tools):
//! real servers on free loopback ports, and a minimal HTTP client.
#![allow(dead_code)] // each binary uses its own subset

pub mod browser;
pub mod client;
pub mod cluster;
pub mod load;
pub mod nginx;
pub mod ports;
pub mod postgres;
pub mod procs;
pub mod python;
pub mod redis;
pub mod redis_cluster;
pub mod tansu;
