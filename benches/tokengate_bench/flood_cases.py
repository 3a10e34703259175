"""Floods: /oauth/token's honest client alone and while a second wrk sends wrong
secrets, a login client's /login while another address floods its id, and
/ping while idle HTTP/2 connections sit on the gRPC port (SPEC §11)."""

from __future__ import annotations

import base64
import http.client
import json
from typing import TYPE_CHECKING

from .common import BenchError, log
from .idle_flood import IdleFlood

if TYPE_CHECKING:
    from .harness import Bench

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


def ping_grpc_idle(b: Bench) -> None:
    """ping, while --grpc-idle-connections idle HTTP/2 connections sit on the
    replica's gRPC port (idle_flood.py): at the default
    grpc.max_connections the replica keeps the newest and closes the rest,
    and /ping must not notice either way."""
    port = b.replica_port(0)
    grpc_port = b.state["replicas"][0].get("grpc_port")
    if not grpc_port:
        raise BenchError("cluster.json has no gRPC port: a scripts/cluster older than this bench?")
    with IdleFlood("127.0.0.1", grpc_port, b.o.grpc_idle_connections) as flood:
        log(f"ping_grpc_idle: {len(flood.socks)} idle connections opened on the gRPC port "
            f"in {flood.seconds:.1f} s")
        row = b.measure("ping_grpc_idle", f"http://127.0.0.1:{port}/ping", "get.lua",
                        check=b.expect_2xx(port, "/ping"))
        row["grpc_idle"] = {"opened": len(flood.socks), "open_at_server": flood.open_at_server(),
                            "seconds_to_open": round(flood.seconds, 2)}
    if flood.note:
        b.notes.append(f"ping_grpc_idle: {flood.note}")


def oauth(b: Bench, want) -> None:
    """oauth_token alone, then under each flood, on a cluster of its own (one
    replica, one OAuth client), so no other case sees its throttle counters."""
    client, secret = OAUTH_CLIENT
    config = (
        "# Written by benches/bench.py for the oauth_token cases.\n"
        "oauth:\n  clients:\n"
        f"    - id: {client}\n"
        f"      secret_hash: {json.dumps(b.hash_secret(secret))}\n"
        "      scopes: [read]\n"
        "server:\n"
        "  # random_addrs: wrk's X-Forwarded-For (on loopback) is believed.\n"
        "  trusted_proxies: [127.0.0.1]\n")
    b.start_cluster(1, "cluster-oauth", config)
    port = b.replica_port(0)
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
        b.measure("oauth_token", url, "oauth_token.lua", [f"Authorization: {basic}"],
                  redis_ops=True, check=check)
    for name, variant in FLOOD_VARIANTS:
        if not want(name):
            continue
        # Each flood starts with no failure counted (the counters live in Redis).
        r = b.redis()
        r.cmd("FLUSHALL")
        r.close()
        row = b.measure(name, url, "oauth_token.lua", [f"Authorization: {basic}"],
                        redis_ops=True, check=check, warmup=False,
                        flood={"url": url, "script": "oauth_flood.lua",
                               "args": (variant, client)})
        # argon2 needs m KiB per verification: what the flood left resident.
        rss = b.peak_rss()["replica-0"]
        row["flood"]["replica_rss_after_kb"] = rss
    for k, v in b.peak_rss().items():
        b.rss[f"oauth-{k}"] = v
    b.stop_cluster()
    for name in OAUTH_CASES:
        b.note_noise(only=name)


def login(b: Bench, want) -> None:
    """login_client on a replica of its own, then login_client_flooded on a
    fresh one (a new cluster: an empty Redis, a secret never verified)."""
    client, secret = LOGIN_CLIENT
    config = (
        "# Written by benches/bench.py for the login_client cases.\n"
        "login:\n  clients:\n"
        f"    - id: {client}\n"
        f"      secret_hash: {json.dumps(b.hash_secret(secret))}\n"
        "auth:\n  max_sessions_per_user: 0\n"
        "server:\n  trusted_proxies: [127.0.0.1]\n")
    basic = "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()
    honest = [f"Authorization: {basic}", "X-Forwarded-For: 192.0.2.10"]
    for name in LOGIN_FLOOD_CASES:
        if not want(name):
            continue
        b.start_cluster(1, f"cluster-{name}", config)
        port = b.replica_port(0)
        url = f"http://127.0.0.1:{port}/login"
        # Both cold, so that they differ in the flood alone: no pre-check or
        # warm-up, the first requests are the replica's first verifications
        # of the secret (the flood then 0.5 s under way).
        flood = None
        if name == "login_client_flooded":
            flood = {"url": url, "script": "oauth_flood.lua",
                     "args": ("other-addr", client, "login")}
        b.measure(name, url, "login.lua", honest, redis_ops=True, warmup=False,
                  flood=flood)
        b.stop_cluster()
    for name in LOGIN_FLOOD_CASES:
        b.note_noise(only=name)
