# syntax=docker/dockerfile:1
#
# tokengate image (SPEC.md §4): built with cargo on Debian 12, run on distroless.
#
#   docker build -t tokengate .          (or: docker compose up --build)
#
# Layer caching: cargo-chef (by the author of zero-to-production) turns Cargo.toml +
# Cargo.lock into a recipe and builds only the dependencies from it, so editing
# src/ rebuilds tokengate alone. It is the "stub main.rs" trick done right: the stub
# has every target the manifest declares ([[test]], [[bench]], build script), where
# a hand-made stub breaks the day Cargo.toml names a file the stub lacks.

FROM rust:1-bookworm AS chef
# Pinned for a reproducible toolchain layer; cached after the first build.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer changes only when Cargo.toml / Cargo.lock do.
# jsonwebtoken's aws_lc_rs backend compiles C with the image's gcc; no cmake needed.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin tokengate
COPY . .
RUN cargo build --release --locked --bin tokengate

# Runtime: glibc + libgcc + CA certificates, no shell, no package manager, user
# `nonroot` (65532). Same Debian 12 glibc as the builder.
FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
COPY --from=builder /src/target/release/tokengate /usr/local/bin/tokengate
# Read from the working directory at start (SPEC §1); environment variables
# TOKENGATE__SECTION__KEY override it (compose.yaml sets the Redis URL and secrets).
COPY config.yml ./config.yml
# Numeric, so runtimes that enforce "run as non-root" can verify it.
USER 65532:65532
EXPOSE 8080
# `tokengate healthcheck` reads the same config as the server and GETs
# http://127.0.0.1:<server.port>/ping: exit 0 on 200, else 1. No curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/tokengate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tokengate"]
