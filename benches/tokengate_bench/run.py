"""The run: every cluster in turn, in the order the report lists them, then the
report written and printed."""

from __future__ import annotations

import json
import shutil
import time

from . import (browser_cases, cached_cases, flood_cases, grpc_cases, http_cases, nginx_cases,
               redis_cluster_cases, user_cases)
from .harness import Bench
from .render import render_text
from .report import report


def run(o) -> int:
    """The whole benchmark with options `o`; 1 if any request failed."""
    b = Bench(o)
    if b.work.exists():
        shutil.rmtree(b.work)
    b.work.mkdir(parents=True)
    started = time.time()
    try:
        all_cases(b)
    finally:
        b.stop_cluster()
    rep = report(b, time.time() - started)
    (b.out_dir / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
    text = render_text(rep)
    (b.out_dir / "report.txt").write_text(text)
    print(text)
    if b.failures:
        print("\n" + "!" * 72)
        print("BENCHMARK FAILED: requests did not all succeed (every answer must be 2xx):")
        for f in b.failures:
            print(f"  - {f}")
        print("!" * 72)
        return 1
    return 0


def all_cases(b: Bench) -> None:
    o = b.o
    sel = set(o.cases.split(",")) if o.cases else None

    def want(name):
        return sel is None or name in sel

    strict_cases(b, want)
    # The same checks with auth.local_cache on (SPEC §10), on a cluster of
    # their own, so that the strict cases above are measured as before.
    if o.cached and any(want(name) for name in cached_cases.CACHED_CASES):
        cached_cases.run(b, want)
    if any(want(name) for name in flood_cases.LOGIN_FLOOD_CASES):
        flood_cases.login(b, want)
    if any(want(name) for name in flood_cases.OAUTH_CASES):
        flood_cases.oauth(b, want)
    if any(want(name) for name in user_cases.USER_CASES):
        user_cases.run(b, want)
    if want("nginx_tokengate_auth_3r") and o.replicas3:
        nginx_cases.three_replicas(b)
    if any(want(name) for name in redis_cluster_cases.REDIS_CLUSTER_CASES):
        redis_cluster_cases.run(b, want)


def strict_cases(b: Bench, want) -> None:
    """The first cluster, auth.local_cache off: direct, nginx and gRPC cases,
    Redis memory and costs, the replica's peak RSS."""
    uds = nginx_cases.unix_socket(b, want, "cluster-1", "nginx_tokengate_auth_uds")
    b.start_cluster(1, "cluster-1", env=[f"TOKENGATE__SERVER__UNIX_SOCKET={uds}"] if uds else [])
    token = b.login(b.replica_port(0))["access"]
    # A service's API token (SPEC §9), made the way an operator makes one.
    api_token = http_cases.make_api_token(b, "bench", ["bench:read"])
    if api_token is None:
        b.notes.append("authenticate_api_token: this binary has no `tokengate token`; skipped")

    if want("ping"):
        http_cases.ping(b)
    if want("ping_grpc_idle"):
        flood_cases.ping_grpc_idle(b)
    http_cases.authenticate(b, want, token, api_token)
    nginx_cases.single_replica_cases(b, want, token, uds)
    # Browser sessions (SPEC §15): the cookie gate beside the Bearer gate.
    browser_cases.run(b, want, token)
    if want("login"):
        http_cases.login(b)
    refresh_pool = http_cases.costs(b, api_token)
    if want("refresh"):
        http_cases.refresh(b, refresh_pool)
    if want("grpc_refresh") or want("grpc_refresh_nginx"):
        grpc_cases.run(b, want)
    if want("logout"):
        http_cases.logout(b)
    b.rss = b.peak_rss()
    b.stop_cluster()
    b.note_noise()
