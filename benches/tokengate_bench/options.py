"""The command line: every option, and what --smoke makes of the defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import ROOT, parse_duration


def parse(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=parse_duration, default=None,
                   help="measured time per case, whole seconds (default 10s; smoke: 1s)")
    p.add_argument("--warmup", type=parse_duration, default=None,
                   help="warm-up before each case, whole seconds (default 2s; smoke: none)")
    p.add_argument("--smoke", action="store_true",
                   help="a few seconds in all, for CI: same cases, short runs, few sessions")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument("--flood-connections", type=int, default=256,
                   help="connections of the wrk that floods /oauth/token with wrong secrets "
                        "(default 256, more than throttle.hash_queue; smoke: 32)")
    p.add_argument("--argon2-connections", type=int, default=8,
                   help="wrk connections of register and password_login, and clients of their setup: "
                        "enough to keep every argon2 worker busy, few enough that none waits past "
                        "throttle.hash_wait (default 8; smoke: 4)")
    p.add_argument("--users", type=int, default=None,
                   help="users registered for password_login to log in, in turn "
                        "(default 200; smoke: 20)")
    p.add_argument("--postgres", action="store_true",
                   help="every cluster on a PostgreSQL of its own (scripts/cluster --postgres) "
                        "instead of one SQLite file")
    p.add_argument("--sessions", type=int, default=None,
                   help="sessions made for the memory figure (default 100000; smoke: 2000)")
    p.add_argument("--cost-ops", type=int, default=200,
                   help="sequential requests per operation for the Redis cost figures")
    p.add_argument("--nginx-workers", default="auto", help="nginx worker_processes (default auto)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every replica, repeatable (experiments: "
                        "TOKIO_WORKER_THREADS=1, TOKENGATE__CACHE__POOL_SIZE=8)")
    p.add_argument("--cases", default="", help="comma-separated subset of cases (default: all)")
    p.add_argument("--no-cached", dest="cached", action="store_false",
                   help="skip the cached cluster (auth.local_cache on): authenticate_cached, "
                        "nginx_tokengate_auth_cached, nginx_tokengate_auth_uds_cached, "
                        "invalidation_delay, cached_rss (run by default)")
    p.add_argument("--trials", type=int, default=None,
                   help="invalidation-delay trials (default 1000; smoke: 100)")
    p.add_argument("--cached-sessions", type=int, default=None,
                   help="sessions held in a replica's local cache for cached_rss "
                        "(default 100000; smoke: 2000)")
    p.add_argument("--cached-cost-ops", type=int, default=None,
                   help="sequential requests for Redis commands per cached authenticate "
                        "(default 2000; smoke: 200)")
    p.add_argument("--no-3-replicas", dest="replicas3", action="store_false",
                   help="skip the 3-replica cluster")
    p.add_argument("--max-logout-pool", type=int, default=2_000_000)
    p.add_argument("--grpc-load", type=Path, default=None,
                   help="examples/grpc_load binary for the gRPC cases (scripts/bench builds it); "
                        "without it they are skipped")
    p.add_argument("--grpc-connections", type=int, default=4,
                   help="HTTP/2 connections of the gRPC cases (default 4)")
    p.add_argument("--grpc-streams", type=int, default=64,
                   help="gRPC calls in flight at once, over those connections (default 64)")
    p.add_argument("--grpc-idle-connections", type=int, default=10_000,
                   help="idle HTTP/2 connections held on the gRPC port during ping_grpc_idle "
                        "(default 10000; smoke: 500)")
    p.add_argument("--binary", type=Path, required=True)
    p.add_argument("--profile", default="release")
    p.add_argument("--out", type=Path, default=ROOT / "target" / "bench")
    o = p.parse_args(argv)
    o.duration = o.duration if o.duration is not None else (1.0 if o.smoke else 10.0)
    o.warmup = o.warmup if o.warmup is not None else (0 if o.smoke else 2.0)
    o.sessions = o.sessions if o.sessions is not None else (2000 if o.smoke else 100_000)
    o.users = o.users if o.users is not None else (20 if o.smoke else 200)
    o.trials = o.trials if o.trials is not None else (100 if o.smoke else 1000)
    o.cached_sessions = o.cached_sessions if o.cached_sessions is not None else (
        2000 if o.smoke else 100_000)
    o.cached_cost_ops = o.cached_cost_ops if o.cached_cost_ops is not None else (
        200 if o.smoke else 2000)
    if o.smoke:
        # Few connections: a debug build on a busy CI machine must not hit
        # wrk's request timeout (a timeout counts as a failed request).
        o.connections = min(o.connections, 16)
        o.flood_connections = min(o.flood_connections, 32)
        o.argon2_connections = min(o.argon2_connections, 4)
        o.cost_ops = min(o.cost_ops, 50)
        o.max_logout_pool = min(o.max_logout_pool, 5000)
        o.grpc_streams = min(o.grpc_streams, 16)
        o.grpc_idle_connections = min(o.grpc_idle_connections, 500)
    o.out.mkdir(parents=True, exist_ok=True)
    o.binary = o.binary.resolve()
    o.grpc_load = o.grpc_load.resolve() if o.grpc_load else None
    return o
