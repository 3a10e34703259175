//! Build-time inputs.
//!
//! - `proto/auth_api.proto` becomes the gRPC messages and service traits.
//!   `protox` parses it in pure Rust, so neither a fresh machine nor the
//!   Docker image needs `protoc`; the descriptors it makes also feed server
//!   reflection.
//! - `sqlx::migrate!` embeds `migrations/` but notices only edits to files
//!   it already embedded; rerunning on the directory catches new ones.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["auth_api.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("auth_api.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
