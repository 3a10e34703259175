#!/usr/bin/env python3
"""tokengate's benchmark: the service against this machine's own ceilings, in one run.

Run it through `scripts/bench` (installs wrk, builds the binary). What it does:

1. starts a native cluster on loopback (redis-server, 1 tokengate replica,
   nginx with the real nginx/*.conf files) with `scripts/cluster up`;
2. runs every case with wrk, each after a short warm-up, in one run so the
   ratios compare numbers taken minutes apart on the same machine:
     ping, ping_grpc_idle (ping while --grpc-idle-connections idle HTTP/2
     connections sit on the replica's gRPC port: tokengate_bench/idle_flood.py),
     authenticate (direct), authenticate_api_token (direct, an API token
     made with `tokengate token create` on the cluster's database; cached in
     Redis after the pre-check), nginx_trivial_auth, nginx_tokengate_auth,
     nginx_upstream_204_auth (an extra nginx with nginx_tokengate_auth's
     config and app, an upstream that says yes at once in tokengate's place:
     the ceiling of any auth service reached over TCP in this deployment),
     nginx_bare_204_auth (the least an auth_request setup can be: no identity
     passed on, an app that answers a constant),
     nginx_tokengate_auth_uds (an extra nginx with the same shared files, its
     upstream the replica's Unix socket, server.unix_socket, instead of TCP),
     login, refresh (pre-made pool, successors chained), logout (pre-made pool);
     grpc_refresh and grpc_refresh_nginx: AuthApi/Refresh over gRPC, to the
     replica's grpc.port and through nginx's gRPC server, with
     examples/grpc_load.rs (tonic's client, HTTP/2 streams over a few
     connections; pools minted by HTTP /login, successors chained);
   then the cached cluster (SPEC §10, auth.local_cache on in both replicas:
   replica 0 behind nginx and over its Unix socket behind an extra nginx, and
   replica 1 started beside it): authenticate_cached,
   nginx_tokengate_auth_cached, nginx_tokengate_auth_uds_cached; Redis
   commands per cached authenticate (also on a replica 2 that writes touches
   behind every second); invalidation_delay (logout on replica 1,
   then replica 0 polled until 401, --trials times); cached_rss (replica 0's
   VmRSS around caching --cached-sessions sessions); --no-cached skips it;
   then a cluster with one OAuth client for oauth_token (client_credentials,
   right secret) alone and while a second wrk floods /oauth/token with wrong
   secrets (oauth_token_flood_same_id, _random_ids, _random_addrs);
   then login_client (a login client's /login) alone, and login_client_flooded
   on a fresh replica while another address floods its id with wrong secrets;
   then a cluster for the users' cases, which are argon2-bound (one argon2id
   hash or verification each, its parameters read from a stored hash):
   register (new emails), password_login (users registered in a setup
   phase), and authenticate_with_users (authenticate again, the database
   full of users: it never touches the database, so it must not change);
   then a last cluster with 3 replicas for nginx_tokengate_auth_3r;
3. measures costs: Redis round trips and commands per operation (INFO deltas
   over a sequential run, and commandstats over each load run; API tokens
   cached and, with their cache entry deleted before each request, missed), Redis memory
   per live session (INFO used_memory around creating --sessions sessions, and
   MEMORY USAGE of one key), each replica's peak RSS (VmHWM);
4. prints a table, the ratios and the targets, writes target/bench/report.json
   (and report.txt), and exits non-zero if any request failed (non-2xx, socket
   errors): a benchmark never fails because the machine is slow.

Only Python's standard library: Redis is spoken to over a socket (RESP), HTTP
with http.client.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tokengate_bench.clients import Redis, free_port, http_request
from tokengate_bench.cluster import Cluster, ExtraNginx, ExtraReplica
from tokengate_bench.common import NGINX_CONF_DIR, ROOT, BenchError, log, parse_duration
from tokengate_bench.idle_flood import IdleFlood
from tokengate_bench.measure import (CpuMeter, children_ticks, finish_wrk, percentile, run_wrk,
                                     start_wrk, vm_kb, wrk_command)

# Targets from issue 5. `kind`: what the value is compared with.
TARGETS = [
    ("authenticate / ping", "ratio_authenticate_ping", ">=", 0.70),
    ("nginx_tokengate_auth / nginx_trivial_auth", "ratio_nginx", ">=", 0.90),
    ("Redis round trips per authenticate", "authenticate_round_trips", "==", 1),
    # SPEC §9: "validation costs at most one Redis round trip on the hot path".
    ("Redis round trips per API-token check", "api_token_round_trips", "==", 1),
    ("login req/s (2 cores)", "login_rps", ">=", 5000),
    ("refresh req/s (2 cores)", "refresh_rps", ">=", 5000),
    ("Redis bytes per session", "bytes_per_session", "<=", 300),
    ("replica peak RSS under load, MB", "replica_rss_mb", "<=", 30),
    # SPEC §10, auth.local_cache on (the cached cluster).
    ("authenticate_cached / ping", "ratio_authenticate_cached_ping", ">=", 0.80),
    ("nginx_tokengate_auth_cached / nginx_upstream_204_auth", "ratio_nginx_cached_204", ">=", 0.90),
    ("invalidation delay p99, ms (loopback)", "invalidation_p99_ms", "<=", 10),
    ("Redis commands per cached authenticate", "cached_commands_per_authenticate", "<", 0.05),
    # Strict mode (the cache off) must not regress: tokengate CPU per request
    # against STRICT_BASELINE_US, within STRICT_TOLERANCE.
    ("strict authenticate, tokengate CPU µs/req", "strict_authenticate_us", "<=", None),
    ("strict nginx_tokengate_auth, tokengate CPU µs/req", "strict_nginx_us", "<=", None),
]

# Strict mode before the local cache, from benches/README.md (shared 2-core AMD
# EPYC, release build): tokengate CPU per request, the figure that held within
# 10 % over runs on a busy machine (req/s moved by ±30 %). A run is within the
# baseline while it is at most STRICT_TOLERANCE above it.
STRICT_BASELINE_US = {"authenticate": 24.4, "nginx_tokengate_auth": 35.3}
STRICT_TOLERANCE = 1.15

# The cached cluster (auth.local_cache on): its load cases, and its two
# measurements that are not wrk runs.
CACHED_LOAD_CASES = ["authenticate_cached", "nginx_tokengate_auth_cached",
                     "nginx_tokengate_auth_uds_cached"]
CACHED_CASES = CACHED_LOAD_CASES + ["invalidation_delay", "cached_rss"]
# The name of a replica's tracking connection (src/store/redis/tracking.rs).
TRACKING_NAME = "tokengate-tracking"
# One invalidation trial gives up after this long (a stale accept that long is
# a failure of the run), and all of them together after INVALIDATION_BUDGET_S.
INVALIDATION_TRIAL_S = 1.0
INVALIDATION_BUDGET_S = 60.0
CACHED_EXPLAINED = (
    "The cached cluster: redis-server, replica 0 (the measured one; nginx's upstream, and "
    "over its Unix socket the extra nginx's) and replica 1 (started by the bench beside it, "
    "on the same Redis and database, not behind nginx), both with auth.local_cache.enabled "
    "and the default auth.touch_interval (auto_logout / 100: 864 s), so no touch is written "
    "behind during the run (replica 2, started for the second cost figure alone, touches every "
    "second). Invalidation delay: per trial, login on replica 1, authenticate "
    "twice on replica 0 (the second from memory), logout on replica 1, then authenticate on "
    "replica 0 back to back until it answers 401; the delay runs from reading the logout's "
    "answer to reading the first 401, so it includes up to one poll (one request's round "
    "trip) of resolution.")


# The flood cases: one OAuth client, its honest caller, and wrong secrets sent
# by a second wrk (benches/wrk/oauth_flood.lua) in one of these ways.
OAUTH_CLIENT = ("bench", "bench-client-secret-not-a-real-one")
FLOOD_VARIANTS = [
    ("oauth_token_flood_same_id", "same-id"),
    ("oauth_token_flood_random_ids", "random-ids"),
    ("oauth_token_flood_random_addrs", "random-addrs"),
]
OAUTH_CASES = ["oauth_token"] + [name for name, _ in FLOOD_VARIANTS]

# A login client's honest /login rate (as from 192.0.2.10) alone, then on a
# fresh replica, which has not yet verified its secret, while the flood of
# wrong secrets for its id comes from another address (198.18.0.1).
LOGIN_CLIENT = ("web", "web-client-secret-not-a-real-one")
LOGIN_FLOOD_CASES = ["login_client", "login_client_flooded"]
LOGIN_FLOOD_EXPLAINED = (
    "SPEC §11: failed secrets count per (client id, address) and per address, so guesses "
    "from one address never refuse the right secret from another. Each case runs on a "
    "replica started for it, without pre-check or warm-up: its first honest requests are "
    "its first verifications of the client's secret (argon2, one per core, before the "
    "secret is remembered), and in login_client_flooded the flood (from 0.5 s before) has "
    "already filled the flooding address's counters by then. The honest client must get no "
    "429, and its rate should stay within noise of login_client; after the first checks "
    "each login writes a session, so the rate is bound by Redis and tokengate.")

# The users' cases (SPEC §7), on a cluster of their own. One password for every
# bench user: at least users.password_min (8) characters.
USER_PASSWORD = "bench-password-not-a-real-one"
USER_CASES = ["register", "password_login", "authenticate_with_users"]
USERS_EXPLAINED = (
    "register and password_login cost one argon2id hash or verification each, run by the "
    "bounded pool of one worker per core (throttle.hash_queue waiting at most "
    "throttle.hash_wait, 503 beyond): their rate is about cores / argon2 time, so they use "
    "--argon2-connections, enough to keep every worker busy without waiting past hash_wait. "
    "The logins all succeed: users.max_failures (5 in 5m) counts failures per account and "
    "address, and none fails here. authenticate_with_users is "
    "authenticate on that cluster once its database holds the users: a token check never "
    "touches the database, so it should match authenticate (ratio about 1).")
# The flood starts this long before the honest run and ends about as long after.
FLOOD_LEAD_S = 0.5
FLOOD_EXPLAINED = (
    "The flood comes from one address (loopback), as the honest client does: after "
    "throttle.max_failures (10) failures of the client id from that address, or "
    "throttle.max_failures_per_address (100) of any id, within throttle.window (5m), every "
    "further guess gets 429 before any argon2 work (counted before it is hashed, so a burst "
    "gets exactly the limit), and the honest client, whose secret is remembered after its "
    "first success, never reaches that check, so it is not locked out. random_addrs sends "
    "X-Forwarded-For from 198.18.0.0/15 (believed: the bench trusts 127.0.0.1), a new "
    "address and id per guess, as a botnet would: nothing is throttled, so every guess costs "
    "an argon2 verification, one per core, throttle.hash_queue (64) waiting at most "
    "throttle.hash_wait (1s), 503 beyond.")


def shipped_front(port: int, tokengate_server: str, app_port: int) -> str:
    """nginx_tokengate_auth's front, as the cluster's nginx has it (the
    shared tokengate.locations.conf / tokengate.protect.conf, /app/ to the
    cluster's echo app), with `upstream tokengate` at `tokengate_server`."""
    shared = NGINX_CONF_DIR
    return f"""    upstream tokengate {{
        server {tokengate_server} max_fails=1 fail_timeout=2s;
        keepalive 64;
        keepalive_timeout 5s;
    }}
    upstream app {{ server 127.0.0.1:{app_port}; keepalive 64; keepalive_timeout 5s; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 100000;
        include {shared}/tokengate.locations.conf;
        location /app/ {{
            include {shared}/tokengate.protect.conf;
            proxy_pass http://app;
        }}
    }}"""


def upstream_204_front(port: int, app_port: int) -> str:
    """nginx_upstream_204_auth: nginx_tokengate_auth's front, unchanged, with
    an auth service that costs nothing in tokengate's place (a server block
    of this nginx answering every check at once with the identity headers a
    session's check gets from tokengate). The ceiling of any auth service
    reached over TCP in this deployment: the same hop, the same
    auth_request_set and proxy_set_header work, the same app."""
    auth = free_port()
    return shipped_front(port, f"127.0.0.1:{auth}", app_port) + f"""
    server {{
        listen 127.0.0.1:{auth} backlog=4096;
        keepalive_requests 100000;
        location / {{
            add_header Cache-Control no-store;
            add_header X-User-Id 42;
            add_header X-Session-Id 3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b;
            add_header X-Request-Id $http_x_request_id;
            return 200;
        }}
    }}"""


def bare_204_front(port: int) -> str:
    """nginx_bare_204_auth: the least an auth_request setup can be. HEAD to
    an upstream that answers 204 at once, nothing passed on to the app, and
    an app that answers a constant. What the hop alone costs nginx."""
    auth, app = free_port(), free_port()
    return f"""    upstream app {{ server 127.0.0.1:{app}; keepalive 64; keepalive_timeout 5s; }}
    upstream auth204 {{ server 127.0.0.1:{auth}; keepalive 64; keepalive_timeout 5s; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 100000;
        location /app/ {{
            auth_request /_auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }}
        location = /_auth {{
            internal;
            proxy_pass http://auth204/authenticate;
            proxy_method HEAD;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{ listen 127.0.0.1:{app} backlog=4096; keepalive_requests 100000;
             location / {{ return 200 '{{"app":"echo"}}\n'; }} }}
    server {{ listen 127.0.0.1:{auth} backlog=4096; keepalive_requests 100000;
             location / {{ return 204; }} }}"""


# The replica's socket in nginx_tokengate_auth_uds; a Unix socket's path has at
# most 107 bytes.
UDS_NAME = "tokengate.sock"
SUN_PATH_MAX = 107


# --------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------


class Bench:
    def __init__(self, opts):
        self.o = opts
        self.out_dir: Path = opts.out
        self.work = self.out_dir / "run"
        self.results: list[dict] = []
        self.costs: dict = {}
        self.memory: dict = {}
        self.rss: dict = {}
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.cluster: Cluster | None = None
        self.argon2: dict = {}
        self.database_use: dict = {}
        self.cached: dict = {}

    # -- helpers --

    def redis(self) -> Redis:
        return Redis(self.state["redis"]["port"])

    def replica_port(self, i: int = 0) -> int:
        return self.state["replicas"][i]["port"]

    def login(self, port: int, user: int = 1) -> dict:
        status, body, conn = http_request(port, "POST", "/login", body={"user_id": user})
        conn.close()
        if status != 200:
            raise BenchError(f"/login answered {status}: {body[:200]!r}")
        return json.loads(body)

    def meter(self) -> CpuMeter:
        groups = {
            "tokengate": [r["pid"] for r in self.state["replicas"] if r.get("pid")],
            "redis": [self.state["redis"]["pid"]] if self.state["redis"].get("pid") else [],
            "nginx": ([self.state["nginx"]["pid"]] if self.state["nginx"].get("pid") else [])
            + list(getattr(self, "extra_pids", [])),
        }
        return CpuMeter(groups)

    def measure_on_front(self, case: str, http_block, ready_path: str, headers: list[str],
                         root_workers: bool = False, **measure) -> None:
        """`case` against GET /app/ on an ExtraNginx (counted as nginx),
        which runs only for the case."""
        front = ExtraNginx(self.work / f"nginx-{case}", self.o.nginx_workers, root_workers)
        try:
            port = front.up(http_block, ready_path)
            self.extra_pids = [front.proc.pid]
            auth = dict(h.split(": ", 1) for h in headers)
            self.measure(case, f"http://127.0.0.1:{port}/app/", "get.lua", headers,
                         check=self.expect_2xx(port, "/app/", headers=auth, times=2), **measure)
        finally:
            self.extra_pids = []
            front.down()

    @staticmethod
    def expect_2xx(port: int, path: str, method: str = "GET", headers=None, times: int = 1):
        """A pre-check: the request answered 2xx, `times` times in a row
        (twice with the cache on: the first fills it, the second is
        answered from it)."""
        def check():
            for _ in range(times):
                status, body, conn = http_request(port, method, path, headers)
                conn.close()
                if not 200 <= status < 300:
                    raise BenchError(f"{method} {path} on :{port} answered {status}: {body[:200]!r}")
        return check

    def start_cluster(self, replicas: int, name: str, config: str | None = None,
                      env: list[str] = ()) -> None:
        log(f"starting cluster '{name}': redis + {replicas} replica(s) + nginx (scripts/cluster)")
        self.cluster = Cluster(self.work / name, replicas, self.o.binary, self.o.nginx_workers,
                               list(self.o.env) + list(env), config, self.o.postgres)
        self.state = self.cluster.up()

    def stop_cluster(self) -> None:
        if self.cluster:
            self.cluster.down()
            self.cluster = None

    # -- one measured case --

    def measure(self, name: str, url: str, script: str, headers=(), args=(),
                redis_ops: bool = False, check=None, warmup: bool = True,
                flood: dict | None = None, connections: int | None = None,
                runner=None) -> dict:
        """One case. With `flood` ({"url", "script", "args", "variant"}), a second
        wrk (--flood-connections) runs from FLOOD_LEAD_S before the measured run
        until about as long after it, and what it got is kept in row["flood"].
        `connections` replaces --connections for this case. `runner(duration,
        warmup)`, instead of wrk, returns a result in wrk's shape and warms up
        itself (the gRPC cases)."""
        o = self.o
        conns = connections or o.connections
        if check is not None:
            check()
        if runner is None and warmup and o.warmup > 0:
            warm = run_wrk(url, script, o.warmup, o.threads, conns, headers, args)
            self._check_errors(f"{name} (warm-up)", warm)
        r = self.redis()
        stats_before = r.commandstats() if redis_ops else None
        meter = self.meter()
        flood_proc = None
        if flood is not None:
            flood_s = max(1, round(o.duration + 2 * FLOOD_LEAD_S))
            flood_cmd = wrk_command(flood["url"], flood["script"], flood_s, o.threads,
                                    o.flood_connections, args=flood["args"])
            flood_proc = start_wrk(flood_cmd)
            # Its CPU while it runs (not reaped yet, so not in children_ticks).
            meter.groups["wrk_flood"] = [flood_proc.pid]
            time.sleep(FLOOD_LEAD_S)
        before, wrk_before = meter.snapshot(), children_ticks()
        try:
            if runner is not None:
                res = runner(o.duration, o.warmup if warmup else 0)
            else:
                res = run_wrk(url, script, o.duration, o.threads, conns, headers, args)
            # Before the flood wrk is reaped: its CPU is counted as wrk_flood.
            after, wrk_after = meter.snapshot(), children_ticks()
        finally:
            if flood_proc is not None:
                flood_res = finish_wrk(flood_proc, flood_cmd, flood_s)
        cpu = CpuMeter.cores(before, after, wrk_after - wrk_before)
        rps = res["requests"] / (res["duration_us"] / 1e6)
        row = {
            "case": name,
            "rps": rps,
            "connections": conns,
            "requests": res["requests"],
            "duration_s": res["duration_us"] / 1e6,
            "latency_ms": {k: v / 1000 for k, v in res["latency_us"].items()},
            "errors": res["errors"],
            "non2xx": max(res["errors"]["status"], res["counters"]["non2xx"]),
            "socket_errors": sum(v for k, v in res["errors"].items() if k != "status"),
            "counters": res["counters"],
            "cpu_cores": cpu,
            # What a request costs each process, whatever else the machine did:
            # steadier across runs on a busy machine than req/s.
            "cpu_us_per_request": {
                k: round(cpu[k] * 1e6 / rps, 2) if rps else None
                for k in ("tokengate", "redis", "nginx", "wrk")
            },
        }
        if redis_ops:
            stats_after = r.commandstats()
            row["redis_calls_per_request"] = {
                cmd: round((stats_after.get(cmd, 0) - stats_before.get(cmd, 0)) / max(res["requests"], 1), 3)
                for cmd in stats_after
                if stats_after.get(cmd, 0) - stats_before.get(cmd, 0) > 0
                and cmd not in ("info",)
            }
            # Unrounded, for the cached mode's commands per authenticate.
            row["redis_calls"] = {
                cmd: stats_after.get(cmd, 0) - stats_before.get(cmd, 0)
                for cmd in stats_after if stats_after.get(cmd, 0) - stats_before.get(cmd, 0) > 0
            }
        r.close()
        self._check_errors(name, res)
        if flood_proc is not None:
            row["flood"] = self.flood_row(name, flood, flood_res)
        self.results.append(row)
        log(f"{name:24} {row['rps']:>10.0f} req/s  p99 {row['latency_ms']['p99']:.2f} ms  "
            f"non-2xx {row['non2xx']}  cpu {cpu}")
        return row

    def flood_row(self, name: str, flood: dict, res: dict) -> dict:
        """What the flood got; a wrong secret answered 200 fails the run."""
        extra = res.get("extra", {})
        secs = res["duration_us"] / 1e6
        row = {
            "variant": flood["args"][0],
            "connections": self.o.flood_connections,
            "requests": res["requests"],
            "duration_s": secs,
            "rps": res["requests"] / secs if secs else 0,
            "status": {k: extra.get(f"s{k}", 0) for k in ("200", "401", "429", "503", "other")},
            "socket_errors": {k: v for k, v in res["errors"].items() if k != "status"},
            "latency_ms": {k: v / 1000 for k, v in res["latency_us"].items()},
        }
        if row["status"]["200"]:
            self.failures.append(f"{name}: {row['status']['200']} wrong client secrets were answered 200")
        st = row["status"]
        log(f"{name:24} flood ({row['variant']}): {row['rps']:.0f} req/s: 401 {st['401']}, "
            f"429 {st['429']}, 503 {st['503']}, other {st['other']}, socket errors {row['socket_errors']}")
        return row

    def grpc_runner(self, url: str, pool: Path):
        """A `measure` runner: examples/grpc_load.rs against `url`, its JSON
        turned into wrk's result shape (a failed call counts as a non-2xx)."""
        o = self.o

        def run(duration: float, warmup: float) -> dict:
            cmd = [str(o.grpc_load), "--url", url, "--pool", str(pool),
                   "--duration", f"{duration:g}", "--warmup", f"{warmup:g}",
                   "--connections", str(o.grpc_connections), "--streams", str(o.grpc_streams)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 60)
            if proc.returncode != 0:
                raise BenchError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
            out = json.loads(proc.stdout)
            failed = sum(out["failures"].values())
            if failed:
                log(f"gRPC failures by code: {out['failures']}")
            return {
                "requests": out["requests"],
                "duration_us": out["duration_us"],
                "latency_us": out["latency_us"],
                "errors": {"status": failed, "connect": 0, "read": 0, "write": 0, "timeout": 0},
                "counters": {"non2xx": failed},
                "grpc": out,
            }
        return run

    def grpc_cases(self, want, port: int) -> None:
        if not self.o.grpc_load:
            self.notes.append("grpc_refresh: skipped (no --grpc-load; scripts/bench builds examples/grpc_load)")
            return
        direct = self.state["replicas"][0].get("grpc_url")
        through = self.state.get("grpc_url")
        if not direct or not through:
            raise BenchError("cluster.json has no gRPC URLs: a scripts/cluster older than this bench?")
        for name, url in (("grpc_refresh", direct), ("grpc_refresh_nginx", through)):
            if not want(name):
                continue
            # Fresh sessions (HTTP /login), two chains' worth per stream: a chain
            # whose call fails starts over from the pool.
            pool = self.make_sessions(port, self.o.grpc_streams * 2, self.work / name)
            self.measure(name, url, "", runner=self.grpc_runner(url, pool), redis_ops=True,
                         connections=self.o.grpc_streams)
            row = self.results[-1]
            row["grpc"] = {"connections": self.o.grpc_connections, "streams": self.o.grpc_streams}

    def ping_grpc_idle(self, port: int, direct: str) -> None:
        """ping, while --grpc-idle-connections idle HTTP/2 connections sit on the
        replica's gRPC port (benches/idle_flood.py): at the default
        grpc.max_connections the replica keeps the newest and closes the rest,
        and /ping must not notice either way."""
        grpc_port = self.state["replicas"][0].get("grpc_port")
        if not grpc_port:
            raise BenchError("cluster.json has no gRPC port: a scripts/cluster older than this bench?")
        with IdleFlood("127.0.0.1", grpc_port, self.o.grpc_idle_connections) as flood:
            log(f"ping_grpc_idle: {len(flood.socks)} idle connections opened on the gRPC port "
                f"in {flood.seconds:.1f} s")
            row = self.measure("ping_grpc_idle", f"{direct}/ping", "get.lua",
                               check=self.expect_2xx(port, "/ping"))
            row["grpc_idle"] = {"opened": len(flood.socks), "open_at_server": flood.open_at_server(),
                                "seconds_to_open": round(flood.seconds, 2)}
        if flood.note:
            self.notes.append(f"ping_grpc_idle: {flood.note}")

    def _check_errors(self, name: str, res: dict) -> None:
        non2xx = max(res["errors"]["status"], res["counters"]["non2xx"])
        sock = sum(v for k, v in res["errors"].items() if k != "status")
        if non2xx or sock:
            self.failures.append(f"{name}: {non2xx} non-2xx answers, socket errors {res['errors']}")

    # -- token pools --

    def make_sessions(self, port: int, count: int, prefix: Path) -> Path:
        """Creates `count` sessions through /login; returns a file of
        "<access> <refresh>" lines (only sessions whose answer was captured)."""
        threads = self.o.threads
        per_thread = -(-count // threads)
        for t in range(threads):
            for suffix in ("", ".done"):
                Path(f"{prefix}.{t}{suffix}").unlink(missing_ok=True)
        res = run_wrk(f"http://127.0.0.1:{port}/login", "mkpool.lua", 600, threads,
                      self.o.connections, args=(prefix, per_thread),
                      stop_file=prefix, stop_count=threads)
        self._check_errors("session pool (login)", res)
        pool = Path(f"{prefix}.all")
        with pool.open("w") as out:
            for t in range(threads):
                out.write(Path(f"{prefix}.{t}").read_text())
        lines = sum(1 for _ in pool.open())
        if lines < count:
            raise BenchError(f"made {lines} of {count} sessions")
        return pool

    # -- client authentication under a flood --

    def hash_secret(self, secret: str) -> str:
        """`tokengate hash-secret`, once: the argon2id PHC string for the config."""
        run = subprocess.run([str(self.o.binary), "hash-secret"], input=secret + "\n",
                             capture_output=True, text=True, timeout=120)
        phc = run.stdout.strip()
        if run.returncode != 0 or not phc.startswith("$argon2id$"):
            raise BenchError(f"tokengate hash-secret failed ({run.returncode}): {run.stderr.strip()}")
        return phc

    def api_token(self, name: str, scopes: list[str]) -> str | None:
        """`tokengate token create NAME --scopes ... --json` as an operator runs it on
        a replica's host: in the cluster's directory, with the replicas' database
        and Redis (cluster.json). The token, or None if this binary has no
        `token` command."""
        db = self.state.get("database") or {}
        env = {**os.environ, "TOKENGATE__DATABASE__URL": db.get("url", ""),
               "TOKENGATE__CACHE__URL": self.state["redis"]["url"],
               "TOKENGATE__AUTH__SECRET": self.state["secret"], "TOKENGATE__LOGIN__OPEN": "true",
               "TOKENGATE__LOGGING__LEVEL": "warn"}
        if db.get("password_file"):
            env["TOKENGATE__DATABASE__PASSWORD_FILE"] = db["password_file"]
        run = subprocess.run([str(self.o.binary), "token", "create", name, "--scopes", *scopes, "--json"],
                             cwd=self.state["dir"], env=env, capture_output=True, text=True, timeout=60)
        if run.returncode != 0 and "unexpected argument" in run.stderr:
            return None
        try:
            token = json.loads(run.stdout)["token"]
        except (ValueError, KeyError):
            raise BenchError(f"tokengate token create failed ({run.returncode}): {run.stderr.strip()}")
        if not token.startswith("tg_live_"):
            raise BenchError(f"tokengate token create printed no API token: {token[:12]}...")
        return token

    def oauth_cases(self, want) -> None:
        """oauth_token alone, then under each flood, on a cluster of its own (one
        replica, one OAuth client), so no other case sees its throttle counters."""
        client, secret = OAUTH_CLIENT
        config = (
            "# Written by benches/bench.py for the oauth_token cases.\n"
            "oauth:\n  clients:\n"
            f"    - id: {client}\n"
            f"      secret_hash: {json.dumps(self.hash_secret(secret))}\n"
            "      scopes: [read]\n"
            "server:\n"
            "  # random_addrs: wrk's X-Forwarded-For (on loopback) is believed.\n"
            "  trusted_proxies: [127.0.0.1]\n")
        self.start_cluster(1, "cluster-oauth", config)
        port = self.replica_port(0)
        url = f"http://127.0.0.1:{port}/oauth/token"
        basic = "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()
        wrong = "Basic " + base64.b64encode(f"{client}:wrong".encode()).decode()

        def token(auth: str) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("POST", "/oauth/token", body="grant_type=client_credentials",
                             headers={"Authorization": auth,
                                      "Content-Type": "application/x-www-form-urlencoded"})
                resp = conn.getresponse()
                resp.read()
                return resp.status
            finally:
                conn.close()

        def check():
            # Also what makes the secret remembered before the measured run.
            if token(basic) != 200:
                raise BenchError("POST /oauth/token with the right secret was not answered 200")

        if token(wrong) != 401:
            raise BenchError("POST /oauth/token with a wrong secret was not answered 401")
        if want("oauth_token"):
            self.measure("oauth_token", url, "oauth_token.lua", [f"Authorization: {basic}"],
                         redis_ops=True, check=check)
        for name, variant in FLOOD_VARIANTS:
            if not want(name):
                continue
            # Each flood starts with no failure counted (the counters live in Redis).
            r = self.redis()
            r.cmd("FLUSHALL")
            r.close()
            row = self.measure(name, url, "oauth_token.lua", [f"Authorization: {basic}"],
                               redis_ops=True, check=check, warmup=False,
                               flood={"url": url, "script": "oauth_flood.lua",
                                      "args": (variant, client)})
            # argon2 needs m KiB per verification: what the flood left resident.
            rss = self.peak_rss()["replica-0"]
            row["flood"]["replica_rss_after_kb"] = rss
        for k, v in self.peak_rss().items():
            self.rss[f"oauth-{k}"] = v
        self.stop_cluster()
        for name in OAUTH_CASES:
            self.note_noise(only=name)

    def login_flood_cases(self, want) -> None:
        """login_client on a replica of its own, then login_client_flooded on a
        fresh one (a new cluster: an empty Redis, a secret never verified)."""
        client, secret = LOGIN_CLIENT
        config = (
            "# Written by benches/bench.py for the login_client cases.\n"
            "login:\n  clients:\n"
            f"    - id: {client}\n"
            f"      secret_hash: {json.dumps(self.hash_secret(secret))}\n"
            "auth:\n  max_sessions_per_user: 0\n"
            "server:\n  trusted_proxies: [127.0.0.1]\n")
        basic = "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()
        honest = [f"Authorization: {basic}", "X-Forwarded-For: 192.0.2.10"]
        for name in LOGIN_FLOOD_CASES:
            if not want(name):
                continue
            self.start_cluster(1, f"cluster-{name}", config)
            port = self.replica_port(0)
            url = f"http://127.0.0.1:{port}/login"
            # Both cold, so that they differ in the flood alone: no pre-check or
            # warm-up, the first requests are the replica's first verifications
            # of the secret (the flood then 0.5 s under way).
            flood = None
            if name == "login_client_flooded":
                flood = {"url": url, "script": "oauth_flood.lua",
                         "args": ("other-addr", client, "login")}
            self.measure(name, url, "login.lua", honest, redis_ops=True, warmup=False,
                         flood=flood)
            self.stop_cluster()
        for name in LOGIN_FLOOD_CASES:
            self.note_noise(only=name)

    # -- users: registration and password login (argon2-bound) --

    def register_user(self, port: int, email: str, conn=None):
        return http_request(port, "POST", "/register",
                            body={"email": email, "password": USER_PASSWORD}, conn=conn)

    def make_users(self, port: int, count: int) -> Path:
        """The setup of password_login: registers `count` users with
        --argon2-connections clients at once; returns a file of their emails."""
        run = f"setup{int(time.time())}{os.getpid()}"
        emails = [f"{run}-{i}@bench.example" for i in range(count)]
        clients = max(1, min(self.o.argon2_connections, count))

        def register(chunk: list[str]) -> list[str]:
            conn, bad = None, []
            for email in chunk:
                try:
                    status, body, conn = self.register_user(port, email, conn)
                except (OSError, http.client.HTTPException):
                    # A kept-alive connection the server closed: once more, anew.
                    status, body, conn = self.register_user(port, email)
                if status != 201:
                    bad.append(f"{email}: {status} {body[:120]!r}")
            if conn:
                conn.close()
            return bad

        with ThreadPoolExecutor(clients) as pool:
            bad = [b for result in pool.map(register, [emails[i::clients] for i in range(clients)])
                   for b in result]
        if bad:
            raise BenchError(f"setup: {len(bad)} of {count} registrations failed, e.g. {bad[0]}")
        path = self.work / "users"
        path.write_text("\n".join(emails) + "\n")
        return path

    def database_query(self, sql: str) -> str | None:
        """One value from the cluster's database (SQLite: its file, read-only;
        PostgreSQL: psql with the cluster's password), or None if it cannot be read."""
        db = self.state.get("database") or {}
        try:
            if db.get("kind") == "sqlite" and db.get("file"):
                con = sqlite3.connect(Path(db["file"]).as_uri() + "?mode=ro", uri=True, timeout=5)
                try:
                    row = con.execute(sql).fetchone()
                finally:
                    con.close()
                return None if row is None else str(row[0])
            if db.get("kind") == "postgres" and shutil.which("psql"):
                env = {**os.environ, "PGPASSWORD": Path(db["password_file"]).read_text()}
                run = subprocess.run(["psql", db["url"], "-XAtq", "-c", sql], env=env,
                                     capture_output=True, text=True, timeout=10)
                return (run.stdout.strip() or None) if run.returncode == 0 else None
        except (OSError, KeyError, sqlite3.Error, subprocess.SubprocessError):
            return None
        return None

    def argon2_params(self) -> dict:
        """The argon2 parameters in use, from a PHC string: one /register stored
        (read from the database), else one `tokengate hash-secret` makes."""
        phc = self.database_query("SELECT password_hash FROM users LIMIT 1")
        source = "a password hash /register stored"
        if not phc:
            phc, source = self.hash_secret("bench-argon2-parameters"), "`tokengate hash-secret`"
        m = re.match(r"\$(argon2(?:id|i|d))\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$", phc)
        if not m:
            raise BenchError(f"not an argon2 PHC string ({source}): {phc[:30]}...")
        return {"algorithm": m[1], "version": int(m[2]), "m_kib": int(m[3]), "t": int(m[4]),
                "p": int(m[5]), "source": source}

    def database_transactions(self) -> int | None:
        """PostgreSQL's count of committed and rolled back transactions in the
        cluster's database (None on SQLite: no server to ask)."""
        value = self.database_query(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        return int(value) if value and value.isdigit() else None

    def users_cases(self, want) -> None:
        """register, password_login and authenticate_with_users on a cluster of
        their own (one replica): argon2's memory stays out of the first cluster's
        RSS, and its rate out of every other case."""
        # Every registration here comes from 127.0.0.1: no per-address limit.
        self.start_cluster(1, "cluster-users",
                           "users:\n  registrations_per_address: 0\n")
        port = self.replica_port(0)
        direct = f"http://127.0.0.1:{port}"
        conns = self.o.argon2_connections

        # The contract, once, before any load: 201 {"user_id"}, 409 email_taken,
        # the /login token pair, 401 invalid_credentials (one failure of the
        # five users.max_failures allows this address).
        probe = f"probe{int(time.time())}{os.getpid()}@bench.example"
        status, body, conn = self.register_user(port, probe)
        conn.close()
        if status == 404:
            self.notes.append("register, password_login, authenticate_with_users: this binary has "
                              "no POST /register; skipped")
            self.stop_cluster()
            return

        def expect(what: str, status: int, body: bytes, want_status: int, check) -> None:
            try:
                ok = status == want_status and check(json.loads(body))
            except ValueError:
                ok = False
            if not ok:
                raise BenchError(f"{what}: answered {status} {body[:200]!r}, want {want_status}")

        expect("POST /register", status, body, 201, lambda d: "user_id" in d)
        status, body, conn = self.register_user(port, probe)
        conn.close()
        expect("POST /register again", status, body, 409, lambda d: d.get("error") == "email_taken")
        for password, want_status, check in (
                (USER_PASSWORD, 200, lambda d: "access" in d and "refresh" in d),
                ("not-the-password", 401, lambda d: d.get("error") == "invalid_credentials")):
            status, body, conn = http_request(port, "POST", "/login",
                                              body={"email": probe, "password": password})
            conn.close()
            expect(f"POST /login (email, {'right' if want_status == 200 else 'wrong'} password)",
                   status, body, want_status, check)
        self.argon2 = self.argon2_params()
        a = self.argon2
        log(f"argon2: {a['algorithm']} v={a['version']} m={a['m_kib']} KiB, t={a['t']}, p={a['p']} "
            f"(from {a['source']})")

        if want("register"):
            self.measure("register", f"{direct}/register", "register.lua", args=(USER_PASSWORD,),
                         redis_ops=True, connections=conns)
        if want("password_login"):
            started = time.monotonic()
            users = self.make_users(port, self.o.users)
            self.database_use["setup_users"] = self.o.users
            self.database_use["setup_s"] = round(time.monotonic() - started, 1)
            log(f"setup: {self.o.users} users registered in {self.database_use['setup_s']} s")
            self.measure("password_login", f"{direct}/login", "password_login.lua",
                         args=(users, self.o.threads, USER_PASSWORD), redis_ops=True,
                         connections=conns)
        if want("authenticate_with_users"):
            token = self.login(port)["access"]

            def check():
                status, body, conn = http_request(port, "GET", "/authenticate",
                                                  {"Authorization": f"Bearer {token}"})
                conn.close()
                if status != 200:
                    raise BenchError(f"GET /authenticate answered {status}: {body[:200]!r}")

            before = self.database_transactions()
            row = self.measure("authenticate_with_users", f"{direct}/authenticate", "get.lua",
                               [f"Authorization: Bearer {token}"], redis_ops=True, check=check)
            after = self.database_transactions()
            users = self.database_query("SELECT count(*) FROM users")
            self.database_use["users_in_database"] = int(users) if users and users.isdigit() else None
            # Minus the transaction of the first query itself.
            self.database_use["transactions_during_authenticate"] = (
                after - before - 1 if before is not None and after is not None else None)
            self.database_use["authenticate_requests"] = row["requests"]
        for k, v in self.peak_rss().items():
            self.rss[f"users-{k}"] = v
        self.stop_cluster()
        for name in USER_CASES:
            self.note_noise(only=name)

    # -- the local cache (SPEC §10): the same checks answered from memory --

    def tracking_clients(self) -> int:
        r = self.redis()
        listing = r.cmd("CLIENT", "LIST").decode()
        r.close()
        return sum(1 for line in listing.splitlines() if f" name={TRACKING_NAME} " in line)

    def wait_tracking(self, replicas: int, within: float = 15.0) -> None:
        """Until every replica's tracking connection is up (until then the
        cache is bypassed, and a case would measure strict mode)."""
        deadline = time.monotonic() + within
        while self.tracking_clients() < replicas:
            if time.monotonic() > deadline:
                raise BenchError(f"fewer than {replicas} tracking connections (name={TRACKING_NAME}) "
                                 f"within {within}s: is the local cache in this binary?")
            time.sleep(0.05)
        # Tracking is switched on right after the name is set.
        time.sleep(0.1)

    def cached_cases(self, want) -> None:
        """The cached cluster: replica 0 (behind nginx, and over its Unix socket
        behind an extra nginx) and an extra replica 1, both with
        auth.local_cache on. Load cases, commands per authenticate, the
        invalidation delay between the two replicas, RSS with many sessions
        cached."""
        o = self.o
        name = "cluster-cached"
        max_entries = max(100_000, 2 * o.cached_sessions)
        cache_env = ["TOKENGATE__AUTH__LOCAL_CACHE__ENABLED=true",
                     f"TOKENGATE__AUTH__LOCAL_CACHE__MAX_ENTRIES={max_entries}"]
        uds = str(self.work / name / UDS_NAME)
        uds_env = []
        if want("nginx_tokengate_auth_uds_cached"):
            if len(uds.encode()) <= SUN_PATH_MAX:
                uds_env = [f"TOKENGATE__SERVER__UNIX_SOCKET={uds}"]
            else:
                self.notes.append(f"nginx_tokengate_auth_uds_cached: {uds} is longer than a Unix "
                                  f"socket's {SUN_PATH_MAX} bytes (a shorter --out); skipped")
        self.start_cluster(1, name, env=cache_env + uds_env)
        other = ExtraReplica(self.state, o.binary, 1, list(o.env) + cache_env)
        self.cached["settings"] = {"replicas": 2, "max_entries": max_entries,
                                   "touch_interval": "default (auth.auto_logout / 100)",
                                   "env": cache_env}
        try:
            other_port = other.up()
            self.wait_tracking(2)
            self._cached_cases(want, other_port, uds if uds_env else None)
            for k, v in self.peak_rss().items():
                self.rss[f"cached-{k}"] = v
        finally:
            other.down()
            self.stop_cluster()
        for case in CACHED_LOAD_CASES:
            self.note_noise(only=case)

    def _cached_cases(self, want, other_port: int, uds: str | None) -> None:
        o = self.o
        port = self.replica_port(0)
        nginx = self.state["nginx"]["port"]
        paths = self.state["paths"]
        token = self.login(other_port)["access"]
        bearer = f"Authorization: Bearer {token}"
        hdr = {"Authorization": f"Bearer {token}"}

        def check_2xx(p, path):
            return self.expect_2xx(p, path, headers=hdr, times=2)

        if want("authenticate_cached"):
            self.measure("authenticate_cached", f"http://127.0.0.1:{port}/authenticate", "get.lua",
                         [bearer], redis_ops=True, check=check_2xx(port, "/authenticate"))
        if want("nginx_tokengate_auth_cached"):
            self.measure("nginx_tokengate_auth_cached", f"http://127.0.0.1:{nginx}{paths['protected']}",
                         "get.lua", [bearer], redis_ops=True,
                         check=check_2xx(nginx, paths["protected"]))
        if uds:
            app_port = self.state["nginx"]["app_port"]
            self.measure_on_front("nginx_tokengate_auth_uds_cached",
                                  lambda p: shipped_front(p, f"unix:{uds}", app_port), "/ping",
                                  [bearer], root_workers=True, redis_ops=True)
        self.cached["cost"] = self.cached_costs(port, other_port, o.cached_cost_ops)
        self.cached["cost_touch_1s"] = self.touch_costs(other_port, 1.5 if o.smoke else 3.5)
        if want("invalidation_delay"):
            self.cached["invalidation"] = self.invalidation_delay(other_port, port, o.trials)
        if want("cached_rss"):
            self.cached["rss"] = self.cached_rss(other_port, port, o.cached_sessions)

    def cached_costs(self, port: int, other_port: int, n: int) -> dict:
        """Redis commands and round trips per authenticate with the cache on:
        INFO around `n` sequential requests on one kept-alive connection, over
        a few sessions made on the other replica, after one request each (the
        look-up that fills the entry). Without INFO itself and PING (the gRPC
        health follower's and the tracking connection's heartbeat, once a
        second each, whatever the requests). Also from the load runs: every
        command Redis counted during them, per request."""
        tokens = [self.login(other_port, 500_000 + i)["access"] for i in range(10)]
        out = self.sequential_cached(port, tokens, n)
        load = {}
        for row in self.results:
            if row["case"] in CACHED_LOAD_CASES and "redis_calls" in row:
                c = {k: v for k, v in row["redis_calls"].items() if k not in ("info", "ping")}
                load[row["case"]] = {"requests": row["requests"], "commands": sum(c.values()),
                                     "per_request": sum(c.values()) / max(row["requests"], 1),
                                     "by_command": c}
        out["load_runs"] = load
        log(f"cached cost: {out['commands']:.4f} commands, {out['round_trips']:.4f} round trips per "
            f"authenticate over {n} sequential requests; load runs: "
            + ", ".join(f"{k} {v['per_request']:.5f}" for k, v in load.items()))
        return out

    def sequential_cached(self, port: int, tokens: list[str], n: int) -> dict:
        """`n` sequential authenticates on one kept-alive connection, round
        robin over `tokens`, after one request each; INFO around them. Commands
        are every command Redis counted (those run inside a script included:
        an upper bound on what the replica sent), without INFO and PING."""
        conn = None
        for t in tokens:
            status, body, conn = http_request(port, "GET", "/authenticate",
                                              {"Authorization": f"Bearer {t}"}, conn=conn)
            if status != 200:
                raise BenchError(f"cached cost warm-up: answer {status}: {body[:200]!r}")
        r = self.redis()
        s0, w0 = r.calls_and_writes()
        started = time.monotonic()
        for i in range(n):
            status, body, conn = http_request(port, "GET", "/authenticate",
                                              {"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
                                              conn=conn)
            if status != 200:
                raise BenchError(f"cached cost run: answer {status}: {body[:200]!r}")
        elapsed = time.monotonic() - started
        s1, w1 = r.calls_and_writes()
        r.close()
        conn.close()
        calls = {c: s1.get(c, 0) - s0.get(c, 0) for c in s1}
        calls.pop("info", None)
        pings = calls.pop("ping", 0)
        calls = {c: v for c, v in sorted(calls.items()) if v > 0}
        writes = w1 - w0 - 1 - pings
        return {"requests": n, "sessions": len(tokens), "elapsed_s": round(elapsed, 2),
                "commands": sum(calls.values()) / n, "evalsha": calls.get("evalsha", 0) / n,
                "round_trips": max(writes, 0) / n, "by_command": calls, "pings_left_out": pings}

    def touch_costs(self, login_port: int, seconds: float) -> dict:
        """The write-behind's share: one more replica (index 2) with
        auth.touch_interval 1s, sequential authenticates of one session for
        about `seconds` (a fixed count, sized from a first second's rate), so
        that every interval's touch and the look-up after it are counted."""
        env = list(self.o.env) + self.cached["settings"]["env"] + ["TOKENGATE__AUTH__TOUCH_INTERVAL=1s"]
        extra = ExtraReplica(self.state, self.o.binary, 2, env)
        try:
            port = extra.up()
            self.wait_tracking(3)
            token = self.login(login_port, 600_000)["access"]
            probe = self.sequential_cached(port, [token], 200)
            rate = 200 / max(probe["elapsed_s"], 1e-3)
            out = self.sequential_cached(port, [token], max(1000, int(rate * seconds)))
        finally:
            extra.down()
        out["touch_interval_s"] = 1
        log(f"cached cost with auth.touch_interval 1s: {out['commands']:.5f} commands "
            f"({out['evalsha']:.5f} EVALSHA) per authenticate over {out['requests']} requests "
            f"in {out['elapsed_s']} s")
        return out

    def invalidation_delay(self, a_port: int, b_port: int, trials: int) -> dict:
        """Logout on replica A, then how long replica B, which had the session
        in memory, goes on accepting it: per trial, login on A, authenticate
        twice on B (the second from memory), logout on A, then authenticate on
        B back to back until 401. Bounded: INVALIDATION_TRIAL_S per trial,
        INVALIDATION_BUDGET_S in all."""
        conn_a = conn_b = None
        delays, polls, stale = [], [], 0
        r = self.redis()
        s0 = r.commandstats()
        started = time.monotonic()
        done = 0

        def auth_b(access: str) -> int:
            nonlocal conn_b
            status, _, conn_b = http_request(b_port, "GET", "/authenticate",
                                             {"Authorization": f"Bearer {access}"}, conn=conn_b)
            return status

        for i in range(trials):
            if time.monotonic() - started > INVALIDATION_BUDGET_S:
                self.notes.append(f"invalidation_delay: {done} of {trials} trials within "
                                  f"{INVALIDATION_BUDGET_S:g}s, the rest skipped")
                break
            status, body, conn_a = http_request(a_port, "POST", "/login",
                                                body={"user_id": 700_000 + i}, conn=conn_a)
            if status != 200:
                raise BenchError(f"invalidation trial: /login answered {status}: {body[:200]!r}")
            access = json.loads(body)["access"]
            for _ in range(2):
                if auth_b(access) != 200:
                    raise BenchError("invalidation trial: a fresh session was refused on replica 0")
            status, body, conn_a = http_request(a_port, "POST", "/logout",
                                                {"Authorization": f"Bearer {access}"}, conn=conn_a)
            if status != 200:
                raise BenchError(f"invalidation trial: /logout answered {status}: {body[:200]!r}")
            t0 = time.perf_counter()
            n = 0
            while True:
                status = auth_b(access)
                n += 1
                elapsed = time.perf_counter() - t0
                if status == 401:
                    break
                if status != 200:
                    raise BenchError(f"invalidation trial: replica 0 answered {status}")
                if elapsed > INVALIDATION_TRIAL_S:
                    stale += 1
                    break
            delays.append(elapsed * 1000)
            polls.append(n)
            done += 1
        s1 = r.commandstats()
        r.close()
        for c in (conn_a, conn_b):
            if c:
                c.close()
        if stale:
            self.failures.append(f"invalidation_delay: replica 0 still accepted a logged-out session "
                                 f"after {INVALIDATION_TRIAL_S:g}s in {stale} of {done} trials")
        calls = {c: s1.get(c, 0) - s0.get(c, 0) for c in s1}
        for c in ("info", "ping"):
            calls.pop(c, None)
        d = sorted(delays)
        out = {
            "trials": done,
            "p50_ms": round(percentile(d, 50), 3),
            "p99_ms": round(percentile(d, 99), 3),
            "max_ms": round(d[-1], 3) if d else None,
            "mean_ms": round(sum(d) / len(d), 3) if d else None,
            "stale_after_bound": stale,
            "polls_p50": percentile(sorted(polls), 50),
            "polls_max": max(polls, default=0),
            "refused_at_first_poll": sum(1 for n in polls if n == 1),
            "elapsed_s": round(time.monotonic() - started, 1),
            "redis_commands_per_trial": {c: round(v / max(done, 1), 2)
                                         for c, v in sorted(calls.items()) if v > 0},
        }
        log(f"invalidation delay over {done} trials: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, "
            f"max {out['max_ms']} ms ({out['refused_at_first_poll']} refused at the first poll)")
        return out

    def cached_rss(self, login_port: int, port: int, count: int) -> dict:
        """Replica 0's VmRSS before and after it holds `count` more sessions in
        memory: made by /login on the other replica (wrk, --connections), then
        each authenticated once on replica 0 (wrk/authpool.lua), which fills
        an entry per session. A sample is then asked for again: answered from
        memory, Redis sees nothing."""
        pid = self.state["replicas"][0]["pid"]
        before = vm_kb(pid)
        pool = self.make_sessions(login_port, count, self.work / "cached-sessions")
        prefix = self.work / "cached-fill"
        threads = self.o.threads
        for t in range(threads):
            Path(f"{prefix}.{t}.done").unlink(missing_ok=True)
        started = time.monotonic()
        res = run_wrk(f"http://127.0.0.1:{port}/authenticate", "authpool.lua", 600, threads,
                      self.o.connections, args=(pool, threads, prefix), stop_file=prefix,
                      stop_count=threads)
        fill_s = time.monotonic() - started
        self._check_errors("cached_rss (fill)", res)
        time.sleep(0.5)
        after = vm_kb(pid)
        # A sample of them again: from memory, so no command reaches Redis.
        tokens = [l.split()[0] for l in pool.read_text().splitlines() if l]
        sample = tokens[:: max(1, len(tokens) // 1000)]
        r = self.redis()
        s0 = r.commandstats()
        conn = None
        for t in sample:
            status, _, conn = http_request(port, "GET", "/authenticate",
                                           {"Authorization": f"Bearer {t}"}, conn=conn)
            if status != 200:
                raise BenchError(f"cached_rss: a cached session was answered {status}")
        s1 = r.commandstats()
        r.close()
        if conn:
            conn.close()
        sent = sum(s1.get(c, 0) - s0.get(c, 0) for c in s1 if c not in ("info", "ping"))
        delta_kb = after["vm_rss_kb"] - before["vm_rss_kb"]
        out = {
            "sessions": len(tokens),
            "vm_rss_kb_before": before["vm_rss_kb"],
            "vm_rss_kb_after": after["vm_rss_kb"],
            "vm_hwm_kb_after": after["vm_hwm_kb"],
            "rss_mb_after": round(after["vm_rss_kb"] / 1024, 1),
            "delta_mb": round(delta_kb / 1024, 1),
            "bytes_per_entry": round(delta_kb * 1024 / max(len(tokens), 1), 1),
            "fill_requests": res["requests"],
            "fill_s": round(fill_s, 1),
            "sample": len(sample),
            "sample_redis_commands": sent,
        }
        log(f"cached_rss: {out['sessions']} sessions cached: VmRSS {before['vm_rss_kb'] / 1024:.1f} -> "
            f"{after['vm_rss_kb'] / 1024:.1f} MB ({out['bytes_per_entry']} B per entry); "
            f"{len(sample)} asked again: {sent} Redis commands")
        return out

    # -- cost figures --

    def sequential_costs(self, port: int, pool: Path, n: int, api_token: str | None) -> dict:
        """Round trips and commands per operation, from INFO deltas around `n`
        sequential requests on one kept-alive connection. Sequential, so every
        Redis round trip is one read and one write on Redis's side. With
        `api_token`, also /authenticate with it: cached (the warm-up fills the
        cache), and missed (its cache entry deleted by this harness before each
        request; that DEL is taken out of the figures)."""
        tokens = [l.split() for l in pool.read_text().split("\n") if l]
        if len(tokens) < n + 3:
            raise BenchError("session pool too small for the cost measurement")
        access = tokens[0][0]
        refresh_chain = [tokens[1][1]]
        # One more than measured: the warm-up takes the first.
        logout_tokens = [t[0] for t in tokens[2 : 3 + n]]

        def run(op, own=None):
            # Warm-up: the first call of each script loads it (NOSCRIPT, then
            # SCRIPT LOAD) and may open a pooled connection; not measured.
            status, body, c = op(n, None)
            c.close()
            if status != 200:
                raise BenchError(f"cost run warm-up: answer {status}: {body[:200]!r}")
            r = self.redis()
            # One INFO on each side of the run.
            s0, w0 = r.calls_and_writes()
            conn = None
            for i in range(n):
                if own:
                    # The harness's own command (one write, one call), before the request.
                    r.cmd(*own)
                status, body, conn = op(i, conn)
                if status != 200:
                    raise BenchError(f"cost run: answer {status}: {body[:200]!r}")
            s1, w1 = r.calls_and_writes()
            r.close()
            if conn:
                conn.close()
            calls = {c: (s1.get(c, 0) - s0.get(c, 0)) for c in s1}
            calls.pop("info", None)
            # The first INFO's reply is one more write (the second is counted before
            # its reply is written). The replica's gRPC health follower PINGs Redis
            # once a second, whatever the requests (src/grpc/mod.rs): not a cost of
            # the operation either.
            writes = w1 - w0 - 1 - (n if own else 0) - calls.pop("ping", 0)
            if own:
                calls[own[0].lower()] -= n
            per_op = {c: round(v / n, 2) for c, v in sorted(calls.items()) if v > 0}
            return {"round_trips": round(writes / n, 2), "commands": per_op}

        def authenticate(i, conn):
            return http_request(port, "GET", "/authenticate",
                                {"Authorization": f"Bearer {access}"}, conn=conn)

        def login(i, conn):
            return http_request(port, "POST", "/login", body={"user_id": 7}, conn=conn)

        def refresh(i, conn):
            status, body, conn = http_request(port, "POST", "/refresh",
                                              body={"refresh": refresh_chain[-1]}, conn=conn)
            if status == 200:
                refresh_chain.append(json.loads(body)["refresh"])
            return status, body, conn

        def logout(i, conn):
            return http_request(port, "POST", "/logout",
                                {"Authorization": f"Bearer {logout_tokens[i]}"}, conn=conn)

        costs = {name: run(op) for name, op in
                 (("authenticate", authenticate), ("login", login),
                  ("refresh", refresh), ("logout", logout))}
        if api_token:
            def authenticate_api_token(i, conn):
                return http_request(port, "GET", "/authenticate",
                                    {"Authorization": f"Bearer {api_token}"}, conn=conn)

            # The cache key of the token (src/store/redis.rs): its SHA-256, in hex.
            key = "tg:at:" + hashlib.sha256(api_token.encode()).hexdigest()
            costs["authenticate_api_token"] = run(authenticate_api_token)
            costs["authenticate_api_token_miss"] = run(authenticate_api_token, own=("DEL", key))
        return costs

    def session_memory(self, port: int, count: int) -> tuple[dict, Path]:
        r = self.redis()
        r.cmd("FLUSHALL")
        r.cmd("MEMORY", "PURGE")
        time.sleep(0.2)
        before = int(r.info("memory")["used_memory"])
        keys_before = r.cmd("DBSIZE")
        pool = self.make_sessions(port, count, self.work / "sessions")
        time.sleep(0.2)
        after = int(r.info("memory")["used_memory"])
        keys = r.cmd("DBSIZE") - keys_before
        first = pool.read_text().split("\n", 1)[0].split()
        sid = json.loads(
            __import__("base64").urlsafe_b64decode(first[0].split(".")[1] + "==")
        )["sid"]
        key = f"tg:s:{sid}"
        usage = r.cmd("MEMORY", "USAGE", key, "SAMPLES", "0")
        encoding = r.cmd("OBJECT", "ENCODING", key)
        fields = r.cmd("HLEN", key)
        cfg = dict(zip(*[iter(r.cmd("CONFIG", "GET", "hash-max-listpack-*"))] * 2))
        r.close()
        mem = {
            "sessions": keys,
            "used_memory_before": before,
            "used_memory_after": after,
            "bytes_per_session": round((after - before) / max(keys, 1), 1),
            "memory_usage_one_key": usage,
            "encoding_one_key": encoding.decode() if isinstance(encoding, bytes) else encoding,
            "fields_one_key": fields,
            "redis_config": {k.decode(): v.decode() for k, v in cfg.items()},
        }
        log(f"memory: {mem['bytes_per_session']} B/session over {keys} sessions; "
            f"MEMORY USAGE of one key {usage} B ({mem['encoding_one_key']}, {fields} fields)")
        return mem, pool

    def peak_rss(self) -> dict:
        out = {}
        for rep in self.state["replicas"]:
            status = Path(f"/proc/{rep['pid']}/status").read_text()
            hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
            rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
            out[f"replica-{rep['index']}"] = {"vm_hwm_kb": hwm, "vm_rss_kb": rss}
        return out

    # -- the run --

    def run(self) -> int:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        started = time.time()
        try:
            self.run_cases()
        finally:
            self.stop_cluster()
        report = self.report(time.time() - started)
        (self.out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        text = render_text(report)
        (self.out_dir / "report.txt").write_text(text)
        print(text)
        if self.failures:
            print("\n" + "!" * 72)
            print("BENCHMARK FAILED: requests did not all succeed (every answer must be 2xx):")
            for f in self.failures:
                print(f"  - {f}")
            print("!" * 72)
            return 1
        return 0

    def run_cases(self) -> None:
        o = self.o
        sel = set(o.cases.split(",")) if o.cases else None

        def want(name):
            return sel is None or name in sel

        # nginx_tokengate_auth_uds: the replica also listens on a Unix socket
        # (server.unix_socket), in the cluster's directory; TCP cases are unchanged.
        uds = str(self.work / "cluster-1" / UDS_NAME)
        uds_env = []
        if want("nginx_tokengate_auth_uds"):
            if len(uds.encode()) <= SUN_PATH_MAX:
                uds_env = [f"TOKENGATE__SERVER__UNIX_SOCKET={uds}"]
            else:
                self.notes.append(f"nginx_tokengate_auth_uds: {uds} is longer than a Unix socket's "
                                  f"{SUN_PATH_MAX} bytes (a shorter --out); skipped")
        self.start_cluster(1, "cluster-1", env=uds_env)
        port = self.replica_port(0)
        nginx = self.state["nginx"]["port"]
        paths = self.state["paths"]
        direct = f"http://127.0.0.1:{port}"
        front = f"http://127.0.0.1:{nginx}"
        token = self.login(port)["access"]
        bearer = f"Authorization: Bearer {token}"
        # A service's API token (SPEC §9), made the way an operator makes one.
        api_token = self.api_token("bench", ["bench:read"])
        if api_token is None:
            self.notes.append("authenticate_api_token: this binary has no `tokengate token`; skipped")

        expect_2xx = self.expect_2xx
        auth_hdr = {"Authorization": f"Bearer {token}"}

        if want("ping"):
            self.measure("ping", f"{direct}/ping", "get.lua", check=expect_2xx(port, "/ping"))
        if want("ping_grpc_idle"):
            self.ping_grpc_idle(port, direct)
        if want("authenticate"):
            self.measure("authenticate", f"{direct}/authenticate", "get.lua", [bearer],
                         redis_ops=True, check=expect_2xx(port, "/authenticate", headers=auth_hdr))
        if want("authenticate_api_token") and api_token:
            # The pre-check is the one cache miss (a database read, then the fill);
            # the warm-up and the measured run are all cache hits.
            api_hdr = {"Authorization": f"Bearer {api_token}"}
            self.measure("authenticate_api_token", f"{direct}/authenticate", "get.lua",
                         [f"Authorization: Bearer {api_token}"], redis_ops=True,
                         check=expect_2xx(port, "/authenticate", headers=api_hdr))
        if want("nginx_trivial_auth"):
            self.measure("nginx_trivial_auth", f"{front}{paths['trivial']}", "get.lua", [bearer],
                         check=expect_2xx(nginx, paths["trivial"], headers=auth_hdr))
        if want("nginx_tokengate_auth"):
            self.measure("nginx_tokengate_auth", f"{front}{paths['protected']}", "get.lua", [bearer],
                         redis_ops=True,
                         check=expect_2xx(nginx, paths["protected"], headers=auth_hdr))
        app_port = self.state["nginx"]["app_port"]
        if want("nginx_upstream_204_auth"):
            self.measure_on_front("nginx_upstream_204_auth",
                                  lambda p: upstream_204_front(p, app_port), "/ping", [bearer])
        if want("nginx_bare_204_auth"):
            self.measure_on_front("nginx_bare_204_auth", bare_204_front, "/app/", [bearer])
        if uds_env:
            self.measure_on_front("nginx_tokengate_auth_uds",
                                  lambda p: shipped_front(p, f"unix:{uds}", app_port), "/ping",
                                  [bearer], root_workers=True, redis_ops=True)
        if want("login"):
            self.measure("login", f"{direct}/login", "login.lua", redis_ops=True)

        # Sessions for memory, the costs and the pools: a clean Redis first.
        self.memory, pool = self.session_memory(port, o.sessions)
        # The first cost_ops + 3 sessions are for the cost figures (their
        # tokens get rotated and logged out); the rest is the refresh pool.
        lines = pool.read_text().splitlines(keepends=True)
        cost_pool, refresh_pool = self.work / "cost.pool", self.work / "refresh.pool"
        cost_pool.write_text("".join(lines[: o.cost_ops + 3]))
        refresh_pool.write_text("".join(lines[o.cost_ops + 3 :]))
        self.costs = self.sequential_costs(port, cost_pool, o.cost_ops, api_token)
        for op, c in self.costs.items():
            log(f"cost {op}: {c['round_trips']} round trip(s), commands {c['commands']}")

        if want("refresh"):
            # The pool's refresh tokens; successors are chained (refresh.lua).
            self.measure("refresh", f"{direct}/refresh", "refresh.lua",
                         args=(refresh_pool, o.threads), redis_ops=True)
        if want("grpc_refresh") or want("grpc_refresh_nginx"):
            self.grpc_cases(want, port)
        if want("logout"):
            # Fresh sessions, enough for the whole run at the speed authenticate
            # had (a logout costs about the same); if it still runs out,
            # logout.lua starts over (idempotent) and the report says so.
            auth_rps = next((r["rps"] for r in self.results if r["case"] == "authenticate"), 0)
            need = int(max(auth_rps, 1000) * o.duration * 1.3)
            need = max(1000, min(need, o.max_logout_pool))
            logout_pool = self.make_sessions(port, need, self.work / "logout")
            self.measure("logout", f"{direct}/logout", "logout.lua",
                         args=(logout_pool, o.threads), redis_ops=True, warmup=False)
            row = self.results[-1]
            if row["counters"]["repeated"]:
                self.notes.append(
                    f"logout: pool of {need} sessions ran out; {row['counters']['repeated']} of "
                    f"{row['requests']} logouts were of already ended sessions (200, same path)")
        self.rss = self.peak_rss()
        self.stop_cluster()
        self.note_noise()

        # The same checks with auth.local_cache on (SPEC §10), on a cluster of
        # their own, so that the strict cases above are measured as before.
        if o.cached and any(want(name) for name in CACHED_CASES):
            self.cached_cases(want)

        if any(want(name) for name in LOGIN_FLOOD_CASES):
            self.login_flood_cases(want)
        if any(want(name) for name in OAUTH_CASES):
            self.oauth_cases(want)

        if any(want(name) for name in USER_CASES):
            self.users_cases(want)

        if want("nginx_tokengate_auth_3r") and o.replicas3:
            self.start_cluster(3, "cluster-3")
            port3 = self.replica_port(0)
            nginx3 = self.state["nginx"]["port"]
            token3 = self.login(port3)["access"]
            hdr3 = {"Authorization": f"Bearer {token3}"}
            self.measure("nginx_tokengate_auth_3r",
                         f"http://127.0.0.1:{nginx3}{self.state['paths']['protected']}",
                         "get.lua", [f"Authorization: Bearer {token3}"], redis_ops=True,
                         check=expect_2xx(nginx3, self.state["paths"]["protected"], headers=hdr3))
            for k, v in self.peak_rss().items():
                self.rss[f"3r-{k}"] = v
            self.stop_cluster()
            self.note_noise(only="nginx_tokengate_auth_3r")

    def note_noise(self, only: str | None = None) -> None:
        """Other processes eat into the two cores: say so next to the numbers."""
        for r in self.results:
            if only and r["case"] != only:
                continue
            other = r["cpu_cores"].get("other", 0)
            if other >= 0.2:
                self.notes.append(
                    f"{r['case']}: other processes used {other:.2f} of the cores during the "
                    f"case; its numbers are low by roughly that share")

    # -- report --

    def report(self, elapsed: float) -> dict:
        by = {r["case"]: r for r in self.results}

        def ratio(a, b):
            if a in by and b in by and by[b]["rps"] > 0:
                return round(by[a]["rps"] / by[b]["rps"], 3)
            return None

        ratios = {
            "authenticate / ping": ratio("authenticate", "ping"),
            # Not targets: a service's API token beside a user's JWT at the same
            # endpoint (one Redis round trip each; an API token has no signature
            # to verify, but a SHA-256 to compute).
            "authenticate_api_token / authenticate": ratio("authenticate_api_token", "authenticate"),
            "authenticate_api_token / ping": ratio("authenticate_api_token", "ping"),
            "nginx_tokengate_auth / nginx_trivial_auth": ratio("nginx_tokengate_auth", "nginx_trivial_auth"),
            # Not a target: how close tokengate gets to an auth service that
            # costs nothing but is reached over TCP like any real one.
            "nginx_tokengate_auth / nginx_upstream_204_auth": ratio("nginx_tokengate_auth",
                                                                    "nginx_upstream_204_auth"),
            "nginx_upstream_204_auth / nginx_trivial_auth": ratio("nginx_upstream_204_auth",
                                                                  "nginx_trivial_auth"),
            # What the shipped nginx config (identity headers, request ids) and
            # the echo app cost beside the least an auth_request setup can be.
            "nginx_upstream_204_auth / nginx_bare_204_auth": ratio("nginx_upstream_204_auth",
                                                                   "nginx_bare_204_auth"),
            # Not targets: nginx to tokengate over the replica's Unix socket
            # (server.unix_socket) beside the same over TCP, and against the ceiling.
            "nginx_tokengate_auth_uds / nginx_tokengate_auth": ratio("nginx_tokengate_auth_uds",
                                                                     "nginx_tokengate_auth"),
            "nginx_tokengate_auth_uds / nginx_trivial_auth": ratio("nginx_tokengate_auth_uds",
                                                                   "nginx_trivial_auth"),
        }
        # SPEC §11: a flood from another address costs the honest client nothing
        # but CPU (should be within noise of 1).
        ratios["login_client_flooded / login_client"] = ratio("login_client_flooded",
                                                              "login_client")
        # The local cache (SPEC §10): cached beside strict, and against the ceilings.
        ratios.update({
            "authenticate_cached / ping": ratio("authenticate_cached", "ping"),
            "authenticate_cached / authenticate": ratio("authenticate_cached", "authenticate"),
            "nginx_tokengate_auth_cached / nginx_upstream_204_auth": ratio(
                "nginx_tokengate_auth_cached", "nginx_upstream_204_auth"),
            "nginx_tokengate_auth_cached / nginx_trivial_auth": ratio(
                "nginx_tokengate_auth_cached", "nginx_trivial_auth"),
            "nginx_tokengate_auth_cached / nginx_bare_204_auth": ratio(
                "nginx_tokengate_auth_cached", "nginx_bare_204_auth"),
            "nginx_tokengate_auth_cached / nginx_tokengate_auth": ratio(
                "nginx_tokengate_auth_cached", "nginx_tokengate_auth"),
            "nginx_tokengate_auth_uds_cached / nginx_upstream_204_auth": ratio(
                "nginx_tokengate_auth_uds_cached", "nginx_upstream_204_auth"),
            "nginx_tokengate_auth_uds_cached / nginx_trivial_auth": ratio(
                "nginx_tokengate_auth_uds_cached", "nginx_trivial_auth"),
            "nginx_tokengate_auth_uds_cached / nginx_tokengate_auth_uds": ratio(
                "nginx_tokengate_auth_uds_cached", "nginx_tokengate_auth_uds"),
        })
        # Not a target: the database beside the token check (it must not matter).
        ratios["authenticate_with_users / authenticate"] = ratio("authenticate_with_users", "authenticate")
        # Not targets: what a flood of wrong client secrets leaves the honest client.
        for name, _ in FLOOD_VARIANTS:
            if name in by:
                ratios[f"{name} / oauth_token"] = ratio(name, "oauth_token")
        # The target is about honest load; the flood cluster's replica (argon2
        # memory per verification) is reported beside it, not held to it, and
        # so is the cached cluster's (its local cache holds --cached-sessions).
        rss_mb = max((v["vm_hwm_kb"] for k, v in self.rss.items()
                      if not k.startswith(("oauth-", "users-", "cached-"))), default=None)
        values = {
            "ratio_authenticate_ping": ratios["authenticate / ping"],
            "ratio_nginx": ratios["nginx_tokengate_auth / nginx_trivial_auth"],
            "authenticate_round_trips": self.costs.get("authenticate", {}).get("round_trips"),
            "api_token_round_trips": self.costs.get("authenticate_api_token", {}).get("round_trips"),
            "login_rps": round(by["login"]["rps"]) if "login" in by else None,
            "refresh_rps": round(by["refresh"]["rps"]) if "refresh" in by else None,
            "bytes_per_session": self.memory.get("bytes_per_session"),
            "replica_rss_mb": round(rss_mb / 1024, 1) if rss_mb else None,
            "ratio_authenticate_cached_ping": ratios["authenticate_cached / ping"],
            "ratio_nginx_cached_204": ratios["nginx_tokengate_auth_cached / nginx_upstream_204_auth"],
            "invalidation_p99_ms": self.cached.get("invalidation", {}).get("p99_ms"),
            # The larger of the two: with the default touch interval, and with touches every second.
            "cached_commands_per_authenticate": (
                round(max(self.cached[k]["commands"] for k in ("cost", "cost_touch_1s")
                          if k in self.cached), 5) if "cost" in self.cached else None),
            "strict_authenticate_us": by.get("authenticate", {}).get("cpu_us_per_request", {}).get("tokengate"),
            "strict_nginx_us": by.get("nginx_tokengate_auth", {}).get("cpu_us_per_request", {}).get("tokengate"),
        }
        if self.o.profile == "dev":
            # The baseline is a release build's: a debug build's figures say nothing.
            values["strict_authenticate_us"] = values["strict_nginx_us"] = None
        baseline_goals = {
            "strict_authenticate_us": round(STRICT_BASELINE_US["authenticate"] * STRICT_TOLERANCE, 1),
            "strict_nginx_us": round(STRICT_BASELINE_US["nginx_tokengate_auth"] * STRICT_TOLERANCE, 1),
        }
        targets = []
        for label, key, op, goal in TARGETS:
            goal = baseline_goals[key] if goal is None else goal
            v = values[key]
            met = None
            if v is not None:
                met = {">=": v >= goal, "<=": v <= goal, "==": v == goal, "<": v < goal}[op]
            targets.append({"target": f"{label} {op} {goal}", "value": v, "met": met})
        return {
            "ok": not self.failures,
            "failures": self.failures,
            "notes": self.notes,
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "elapsed_s": round(elapsed, 1),
            "machine": machine_info(),
            "settings": {
                "duration_s": self.o.duration,
                "warmup_s": self.o.warmup,
                "wrk_threads": self.o.threads,
                "wrk_connections": self.o.connections,
                "flood_connections": self.o.flood_connections,
                "argon2_connections": self.o.argon2_connections,
                "users": self.o.users,
                "database": "postgres" if self.o.postgres else "sqlite",
                "nginx_workers": self.o.nginx_workers,
                "replica_env": self.o.env,
                "sessions": self.o.sessions,
                "binary": str(self.o.binary),
                "profile": self.o.profile,
                "smoke": self.o.smoke,
                "cached": self.o.cached,
                "invalidation_trials": self.o.trials,
                "cached_sessions": self.o.cached_sessions,
                "cached_cost_ops": self.o.cached_cost_ops,
            },
            "cases": self.results,
            "ratios": ratios,
            "redis_costs": self.costs,
            "redis_memory": self.memory,
            "replica_rss": self.rss,
            "argon2": self.argon2,
            "database_use": self.database_use,
            "local_cache": self.cached,
            "targets": targets,
        }


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])

    def version(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    commit = version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": version(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "redis": version(["redis-server", "--version"]),
        "nginx": version([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "wrk": version(["wrk", "--version"]),
        "commit": commit,
    }


def render_text(rep: dict) -> str:
    s = rep["settings"]
    m = rep["machine"]
    lines = [
        f"tokengate benchmark  {rep['when']}  commit {m['commit']}  ({'smoke' if s['smoke'] else 'full'} run, "
        f"{s['profile']} build)",
        f"machine: {m['cores']} cores, {m['cpu']}, {m['memory_gb']} GB, {m['os']}",
        f"load: wrk -t{s['wrk_threads']} -c{s['wrk_connections']}, {s['duration_s']:g}s per case "
        f"after {s['warmup_s']:g}s warm-up; nginx worker_processes {s['nginx_workers']}; "
        f"everything on loopback, sharing the cores",
        "",
        f"{'case':30} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'non-2xx':>7}"
        f"   cores: tokengate redis nginx wrk kernel other",
    ]
    for r in rep["cases"]:
        lat, c = r["latency_ms"], r["cpu_cores"]
        bad = r["non2xx"] + r["socket_errors"]
        lines.append(
            f"{r['case']:30} {r['rps']:>9.0f} {lat['p50']:>7.2f} {lat['p99']:>7.2f} {lat['p999']:>8.2f} "
            f"{bad:>7}{' !!' if bad else '   '}        "
            f"{c.get('tokengate', 0):>9.2f} {c.get('redis', 0):>5.2f} {c.get('nginx', 0):>5.2f} "
            f"{c.get('wrk', 0):>3.2f} {c.get('kernel', 0):>6.2f} {c.get('other', 0):>5.2f}"
        )
    lines.append("")
    lines.append("CPU per request, µs (cores used / req/s; steadier than req/s when the machine is busy):")
    lines.append(f"  {'case':30} {'tokengate':>9} {'redis':>6} {'nginx':>6} {'wrk':>5}")
    for r in rep["cases"]:
        u = r["cpu_us_per_request"]
        lines.append(f"  {r['case']:30} {u['tokengate']:>9.1f} {u['redis']:>6.1f} {u['nginx']:>6.1f} {u['wrk']:>5.1f}")
    lines.append("")
    by = {r["case"]: r for r in rep["cases"]}
    if "ping_grpc_idle" in by:
        r, g = by["ping_grpc_idle"], by["ping_grpc_idle"]["grpc_idle"]
        lines.append(f"/ping while {g['opened']} idle HTTP/2 connections sit on the gRPC port "
                     f"(opened in {g['seconds_to_open']:g} s; the replica holds {g['open_at_server']}, "
                     f"at most grpc.max_connections):")
        for name in ("ping", "ping_grpc_idle"):
            if name in by:
                lat = by[name]["latency_ms"]
                lines.append(f"  {name:16} {by[name]['rps']:>9.0f} req/s  p50 {lat['p50']:.2f} ms  "
                             f"p99 {lat['p99']:.2f} ms")
        lines.append("")
    if any(name in by for name in OAUTH_CASES):
        alone = by.get("oauth_token", {}).get("rps")
        lines.append("Client authentication under a flood of wrong secrets (POST /oauth/token, "
                     "client_credentials, HTTP Basic, direct to the replica; "
                     f"flood: a second wrk, -c{s['flood_connections']}):")
        lines.append(f"  {'case':31} {'honest req/s':>12} {'vs alone':>8} {'flood req/s':>11} "
                     f"{'401':>8} {'429':>8} {'503':>8} {'other':>6} {'flood p99 ms':>12} "
                     f"{'replica peak RSS MB':>19}")
        for name in OAUTH_CASES:
            if name not in by:
                continue
            r = by[name]
            vs = f"{r['rps'] / alone:.2f}" if alone and name != "oauth_token" else ""
            f = r.get("flood")
            if f:
                st, sock = f["status"], sum(f["socket_errors"].values())
                lines.append(
                    f"  {name:31} {r['rps']:>12.0f} {vs:>8} {f['rps']:>11.0f} {st['401']:>8} "
                    f"{st['429']:>8} {st['503']:>8} {st['other'] + sock:>6} {f['latency_ms']['p99']:>12.2f} "
                    f"{f.get('replica_rss_after_kb', {}).get('vm_hwm_kb', 0) / 1024:>19.1f}")
            else:
                lines.append(f"  {name:31} {r['rps']:>12.0f}   (alone)")
        lines.append("  (other: any other status, or a socket error such as a timeout)")
        lines.extend(wrapped(FLOOD_EXPLAINED))
        lines.append("")
    if any(name in by for name in LOGIN_FLOOD_CASES):
        alone = by.get("login_client", {}).get("rps")
        lines.append("A login client's honest /login while another address floods its id with "
                     "wrong secrets (direct to the replica):")
        for name in LOGIN_FLOOD_CASES:
            if name not in by:
                continue
            r = by[name]
            vs = f"  {r['rps'] / alone:.2f} of alone" if alone and name != "login_client" else ""
            line = f"  {name:31} {r['rps']:>10.0f} req/s  non-2xx {r['non2xx']}{vs}"
            f = r.get("flood")
            if f:
                st = f["status"]
                line += (f"  (flood {f['rps']:.0f} req/s: 401 {st['401']}, 429 {st['429']}, "
                         f"503 {st['503']})")
            lines.append(line)
        lines.extend(wrapped(LOGIN_FLOOD_EXPLAINED))
        lines.append("")
    if any(name in by for name in USER_CASES):
        a = rep.get("argon2") or {}
        params = (f"{a['algorithm']} v={a['version']} m={a['m_kib']} KiB, t={a['t']}, p={a['p']} "
                  f"(read from {a['source']})" if a else "argon2 parameters unknown")
        lines.append(f"Users, argon2-bound (direct to the replica, {s['database']} database, "
                     f"wrk -c{s['argon2_connections']} for register and password_login):")
        lines.append(f"  {params}")
        lines.append(f"  {'case':31} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'tokengate CPU µs/req':>21}")
        for name in USER_CASES:
            if name not in by:
                continue
            r = by[name]
            lines.append(f"  {name:31} {r['rps']:>9.0f} {r['latency_ms']['p50']:>7.2f} "
                         f"{r['latency_ms']['p99']:>7.2f} {r['cpu_us_per_request']['tokengate'] or 0:>21.1f}")
        if "authenticate" in by and "authenticate_with_users" in by:
            r0, r1 = by["authenticate"], by["authenticate_with_users"]
            lines.append(f"  authenticate_with_users / authenticate: {r1['rps'] / r0['rps']:.2f} in req/s, "
                         f"{(r1['cpu_us_per_request']['tokengate'] or 0) / (r0['cpu_us_per_request']['tokengate'] or 1):.2f} "
                         f"in tokengate CPU per request")
        use = rep.get("database_use") or {}
        if use.get("setup_users"):
            lines.append(f"  setup of password_login: {use['setup_users']} users registered in {use['setup_s']} s")
        if "users_in_database" in use:
            tx = use.get("transactions_during_authenticate")
            lines.append(
                f"  during authenticate_with_users: {use['users_in_database']} users in the database; "
                + (f"{tx} database transactions for {use['authenticate_requests']} requests, none per request "
                   f"(the replica's own polling: events.relay_interval, database.clients_refresh; "
                   f"PostgreSQL also reports earlier cases' counts late)" if tx is not None
                   else "database transactions not counted (SQLite: no server to ask; --postgres counts them)"))
        lines.extend(wrapped(USERS_EXPLAINED))
        lines.append("")
    lc = rep.get("local_cache") or {}
    pairs = [("authenticate", "authenticate_cached"),
             ("nginx_tokengate_auth", "nginx_tokengate_auth_cached"),
             ("nginx_tokengate_auth_uds", "nginx_tokengate_auth_uds_cached")]
    if lc or any(c in by for _, c in pairs):
        lines.append("Local cache (auth.local_cache on, SPEC §10) beside strict mode (off), same run:")
        lines.append(f"  {'case':26} {'strict req/s':>12} {'cached req/s':>12} {'ratio':>6}   "
                     f"µs/req strict -> cached: {'tokengate':>15} {'redis':>13} {'nginx':>13}")

        def us(row, k):
            v = row["cpu_us_per_request"][k] if row else None
            return f"{v:.1f}" if v is not None else "-"

        for strict, cached in pairs:
            a, b = by.get(strict), by.get(cached)
            if not b:
                continue
            ratio = f"{b['rps'] / a['rps']:.2f}" if a and a["rps"] else "-"
            lines.append(
                f"  {strict:26} {a['rps'] if a else 0:>12.0f} {b['rps']:>12.0f} {ratio:>6}   "
                f"{'':24}{us(a, 'tokengate') + ' -> ' + us(b, 'tokengate'):>15} "
                f"{us(a, 'redis') + ' -> ' + us(b, 'redis'):>13} "
                f"{us(a, 'nginx') + ' -> ' + us(b, 'nginx'):>13}")
        cost = lc.get("cost")
        if cost:
            by_cmd = ", ".join(f"{k} {v}" for k, v in cost["by_command"].items()) or "none"
            lines.append(f"  Redis per cached authenticate: {cost['commands']:.4f} commands, "
                         f"{cost['round_trips']:.4f} round trips ({cost['requests']} sequential requests "
                         f"over {cost['sessions']} sessions after one look-up each; commands: {by_cmd}; "
                         f"{cost['pings_left_out']} heartbeat PINGs left out)")
            t = lc.get("cost_touch_1s")
            if t:
                by_cmd = ", ".join(f"{k} {v}" for k, v in t["by_command"].items()) or "none"
                lines.append(f"    with auth.touch_interval 1s (replica 2, one session, {t['requests']} requests "
                             f"in {t['elapsed_s']} s): {t['commands']:.5f} commands, {t['evalsha']:.5f} "
                             f"EVALSHA per authenticate (commands: {by_cmd})")
            for case, v in cost.get("load_runs", {}).items():
                lines.append(f"    in the {case} load run: {v['commands']} commands for {v['requests']} "
                             f"requests = {v['per_request']:.5f} per request (PING and INFO left out)")
        inv = lc.get("invalidation")
        if inv:
            lines.append(f"  Invalidation delay (logout on replica 1 -> first 401 on replica 0), "
                         f"{inv['trials']} trials: p50 {inv['p50_ms']:.2f} ms, p99 {inv['p99_ms']:.2f} ms, "
                         f"max {inv['max_ms']:.2f} ms; polls per trial p50 {inv['polls_p50']}, max "
                         f"{inv['polls_max']}; refused at the first poll in {inv['refused_at_first_poll']}; "
                         f"still accepted after {INVALIDATION_TRIAL_S:g}s: {inv['stale_after_bound']}")
            cmds = ", ".join(f"{k} {v:g}" for k, v in inv["redis_commands_per_trial"].items())
            lines.append(f"    Redis commands per trial (login, two authenticates, logout, the polls): {cmds}")
        rss = lc.get("rss")
        if rss:
            lines.append(f"  Replica 0 holding {rss['sessions']} more cached sessions: VmRSS "
                         f"{rss['vm_rss_kb_before'] / 1024:.1f} -> {rss['vm_rss_kb_after'] / 1024:.1f} MB "
                         f"(+{rss['delta_mb']:.1f} MB, {rss['bytes_per_entry']:.0f} B per entry; VmHWM "
                         f"{rss['vm_hwm_kb_after'] / 1024:.1f} MB); filled in {rss['fill_s']} s; "
                         f"{rss['sample']} of them asked again: {rss['sample_redis_commands']} Redis commands")
        lines.extend(wrapped(CACHED_EXPLAINED))
        lines.append("")
    costs = rep["redis_costs"]
    if costs:
        lines.append("Redis per operation (sequential run, INFO deltas):")
        for op, cst in costs.items():
            cmds = ", ".join(f"{k} {v:g}" for k, v in cst["commands"].items())
            lines.append(f"  {op:28} {cst['round_trips']:g} round trip(s); commands: {cmds}")
    mem = rep["redis_memory"]
    if mem:
        lines.append(
            f"Redis memory: {mem['bytes_per_session']:g} B per live session "
            f"({mem['sessions']} sessions, used_memory {mem['used_memory_before']} -> "
            f"{mem['used_memory_after']}); MEMORY USAGE of one session key: "
            f"{mem['memory_usage_one_key']} B ({mem['encoding_one_key']}, {mem['fields_one_key']} fields)")
    if rep["replica_rss"]:
        rss = ", ".join(f"{k} {v['vm_hwm_kb'] / 1024:.1f} MB" for k, v in rep["replica_rss"].items())
        lines.append(f"Replica peak RSS (VmHWM): {rss}")
    for n in rep["notes"]:
        lines.append(f"note: {n}")
    lines.append("")
    lines.append("Targets:")
    for t in rep["targets"]:
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"  {t['target']:64} {str(t['value']):>10}  {mark}")
    lines.append("")
    lines.append("Ratios:")
    for k, v in rep["ratios"].items():
        lines.append(f"  {k:48} {v if v is not None else 'n/a'}")
    return "\n".join(lines) + "\n"


def wrapped(text: str, indent: str = "  ", width: int = 96) -> list[str]:
    out, line = [], indent
    for w in text.split():
        if len(line) + len(w) > width:
            out.append(line.rstrip())
            line = indent
        line += w + " "
    out.append(line.rstrip())
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
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
    o = p.parse_args()
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

    bench = Bench(o)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return bench.run()
    except BenchError as e:
        print(f"\nBENCHMARK BROKEN: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
