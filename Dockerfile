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

# The toolchain tokengate is built and tested with, pinned to its minor so that
# a build next year compiles with the same compiler; at least Cargo.toml's
# rust-version (scripts/check-deploy compares them). Raise both together.
FROM rust:1.95-bookworm AS chef
# Pinned for a reproducible toolchain layer; cached after the first build.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer changes only when Cargo.toml / Cargo.lock do.
# C compiled here: jsonwebtoken's aws_lc_rs backend (gcc; no cmake needed), and the
# Kafka sink's librdkafka with a vendored OpenSSL and zlib (gcc, make and perl with
# its core modules — OpenSSL's Configure uses IPC::Cmd; about three minutes on two
# cores), linked statically, so the runtime image needs nothing more. rust:bookworm
# has perl already (then this is a no-op); a slimmer builder image may not.
# hadolint ignore=DL3008
RUN if ! perl -MIPC::Cmd -e1 2>/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends perl \
        && rm -rf /var/lib/apt/lists/*; \
    fi
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin tokengate
# Everything, migrations/ included: sqlx::migrate! embeds migrations/sqlite and
# migrations/postgres into the binary at compile time (the replicas apply them at
# start-up), so they must reach this stage and need not reach the runtime image.
# (The planner copies everything too, for the manifests and target paths; its
# recipe holds no migrations, so editing one never rebuilds the dependencies.)
COPY . .
RUN cargo build --release --locked --bin tokengate
# SQLite, the built-in default (database.url sqlite://tokengate.db, relative to the
# working directory), needs a directory the service may write and that a volume can
# be mounted on without hiding config.yml: /app/data, owned by the service's user.
# The image's config.yml points database.url there; every other key keeps its
# default. compose.yaml needs neither: it uses PostgreSQL (config.compose.yml is
# mounted over this config.yml) and runs the replicas read_only. With SQLite, run
# one container and keep its file on a volume: docker run -v tokengate-data:/app/data
RUN mkdir -p /out/data \
    && sed 's|^  url: "sqlite://tokengate.db?mode=rwc"|  url: "sqlite:///app/data/tokengate.db?mode=rwc"|' \
        config.yml >/out/config.yml \
    && grep -q '^  url: "sqlite:///app/data/tokengate.db?mode=rwc"' /out/config.yml

# Runtime: glibc + libgcc + CA certificates, no shell, no package manager, user
# `nonroot` (65532). Same Debian 12 glibc as the builder. librdkafka, OpenSSL and
# zlib are in the binary; Kafka over TLS finds these CA certificates by itself.
FROM gcr.io/distroless/cc-debian12:nonroot
WORKDIR /app
COPY --from=builder /src/target/release/tokengate /usr/local/bin/tokengate
# Read from the working directory at start (SPEC §1); environment variables
# TOKENGATE__SECTION__KEY override it (compose.yaml sets the Redis URL and secrets).
# Root's and read-only to the service; only data/ is the service's (see above).
COPY --from=builder /out/config.yml ./config.yml
COPY --from=builder --chown=65532:65532 /out/data ./data
# Numeric, so runtimes that enforce "run as non-root" can verify it.
USER 65532:65532
EXPOSE 8080
# gRPC (grpc.port, SPEC §8); 0 turns it off.
EXPOSE 9090
# /admin/* and /metrics answer on admin.listen only (SPEC §11): 127.0.0.1:8081
# by default, inside the container; compose.yaml sets 0.0.0.0:8081 for its
# internal `ops` network. Deliberately not EXPOSEd beside the public ports.
# `tokengate healthcheck` reads the same config as the server and GETs
# http://127.0.0.1:<server.port>/ping: exit 0 on 200, else 1. No curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/tokengate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/tokengate"]
