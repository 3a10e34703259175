"""HTTP cases, direct to the replica of the strict cluster (auth.local_cache
off): ping, authenticate with a session and with an API token, login, refresh
and logout over pools of pre-made sessions; and what they cost Redis (round
trips and commands per operation, memory per live session)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .clients import http_request
from .common import BenchError, log

if TYPE_CHECKING:
    from .harness import Bench


def direct(b: Bench) -> str:
    return f"http://127.0.0.1:{b.replica_port(0)}"


def ping(b: Bench) -> None:
    b.measure("ping", f"{direct(b)}/ping", "get.lua",
              check=b.expect_2xx(b.replica_port(0), "/ping"))


def authenticate(b: Bench, want, token: str, api_token: str | None) -> None:
    """authenticate with a session's access token, then with a service's API
    token (SPEC §9)."""
    port, url = b.replica_port(0), f"{direct(b)}/authenticate"
    if want("authenticate"):
        auth_hdr = {"Authorization": f"Bearer {token}"}
        b.measure("authenticate", url, "get.lua", [f"Authorization: Bearer {token}"],
                  redis_ops=True, check=b.expect_2xx(port, "/authenticate", headers=auth_hdr))
    if want("authenticate_api_token") and api_token:
        # The pre-check is the one cache miss (a database read, then the fill);
        # the warm-up and the measured run are all cache hits.
        api_hdr = {"Authorization": f"Bearer {api_token}"}
        b.measure("authenticate_api_token", url, "get.lua",
                  [f"Authorization: Bearer {api_token}"], redis_ops=True,
                  check=b.expect_2xx(port, "/authenticate", headers=api_hdr))


def login(b: Bench) -> None:
    b.measure("login", f"{direct(b)}/login", "login.lua", redis_ops=True)


def costs(b: Bench, api_token: str | None) -> Path:
    """Redis memory per session and the cost of each operation (b.memory,
    b.costs), over --sessions sessions made on a clean Redis; returns the
    ones left over, refresh's pool."""
    o = b.o
    b.memory, pool = session_memory(b, b.replica_port(0), o.sessions)
    # The first cost_ops + 3 sessions are for the cost figures (their
    # tokens get rotated and logged out); the rest is the refresh pool.
    lines = pool.read_text().splitlines(keepends=True)
    cost_pool, refresh_pool = b.work / "cost.pool", b.work / "refresh.pool"
    cost_pool.write_text("".join(lines[: o.cost_ops + 3]))
    refresh_pool.write_text("".join(lines[o.cost_ops + 3 :]))
    b.costs = sequential_costs(b, b.replica_port(0), cost_pool, o.cost_ops, api_token)
    for op, c in b.costs.items():
        log(f"cost {op}: {c['round_trips']} round trip(s), commands {c['commands']}")
    return refresh_pool


def refresh(b: Bench, pool: Path) -> None:
    """The pool's refresh tokens; successors are chained (refresh.lua). No
    warm-up: it would rotate the pool's tokens, and the run would present
    them again — reuse, which ends the session (the cost run has loaded the
    script and opened the connections)."""
    b.measure("refresh", f"{direct(b)}/refresh", "refresh.lua",
              args=(pool, b.o.threads), redis_ops=True, warmup=False)


def logout(b: Bench) -> None:
    """Fresh sessions, enough for the whole run at the speed authenticate
    had (a logout costs about the same); if it still runs out, logout.lua
    starts over (idempotent) and the report says so."""
    o = b.o
    auth_rps = next((r["rps"] for r in b.results if r["case"] == "authenticate"), 0)
    need = int(max(auth_rps, 1000) * o.duration * 1.3)
    need = max(1000, min(need, o.max_logout_pool))
    logout_pool = b.make_sessions(b.replica_port(0), need, b.work / "logout")
    b.measure("logout", f"{direct(b)}/logout", "logout.lua",
              args=(logout_pool, o.threads), redis_ops=True, warmup=False)
    row = b.results[-1]
    if row["counters"]["repeated"]:
        b.notes.append(
            f"logout: pool of {need} sessions ran out; {row['counters']['repeated']} of "
            f"{row['requests']} logouts were of already ended sessions (200, same path)")


def make_api_token(b: Bench, name: str, scopes: list[str]) -> str | None:
    """`tokengate token create NAME --scopes ... --json` as an operator runs it on
    a replica's host: in the cluster's directory, with the replicas' database
    and Redis (cluster.json). The token, or None if this binary has no
    `token` command."""
    db = b.state.get("database") or {}
    env = {**os.environ, "TOKENGATE__DATABASE__URL": db.get("url", ""),
           "TOKENGATE__CACHE__URL": b.state["redis"]["url"],
           "TOKENGATE__AUTH__SECRET": b.state["secret"], "TOKENGATE__LOGIN__OPEN": "true",
           "TOKENGATE__LOGGING__LEVEL": "warn"}
    if db.get("password_file"):
        env["TOKENGATE__DATABASE__PASSWORD_FILE"] = db["password_file"]
    run = subprocess.run([str(b.o.binary), "token", "create", name, "--scopes", *scopes, "--json"],
                         cwd=b.state["dir"], env=env, capture_output=True, text=True, timeout=60)
    if run.returncode != 0 and "unexpected argument" in run.stderr:
        return None
    try:
        token = json.loads(run.stdout)["token"]
    except (ValueError, KeyError):
        raise BenchError(f"tokengate token create failed ({run.returncode}): {run.stderr.strip()}")
    if not token.startswith("tg_live_"):
        raise BenchError(f"tokengate token create printed no API token: {token[:12]}...")
    return token


def sequential_costs(b: Bench, port: int, pool: Path, n: int, api_token: str | None) -> dict:
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

    def run(name, op, own=None, n=n):
        # Warm-up: the first call of each script loads it (NOSCRIPT, then
        # SCRIPT LOAD) and may open a pooled connection; not measured.
        status, body, c = op(n, None)
        c.close()
        if status != 200:
            raise BenchError(f"cost run warm-up of {name}: answer {status}: {body[:200]!r}")
        r = b.redis()
        # One INFO on each side of the run.
        s0, w0 = r.calls_and_writes()
        conn = None
        for i in range(n):
            if own:
                # The harness's own command (one write, one call), before the request.
                r.cmd(*own)
            status, body, conn = op(i, conn)
            if status != 200:
                raise BenchError(f"cost run of {name}, request {i}: answer {status}: {body[:200]!r}")
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
        return http_request(port, "POST", "/login", body={"user_id": 900_000_000 + i}, conn=conn)

    def login_at_cap(i, conn):
        return http_request(port, "POST", "/login", body={"user_id": "at-cap"}, conn=conn)

    def refresh(i, conn):
        status, body, conn = http_request(port, "POST", "/refresh",
                                          body={"refresh": refresh_chain[-1]}, conn=conn)
        if status == 200:
            refresh_chain.append(json.loads(body)["refresh"])
        return status, body, conn

    def logout(i, conn):
        return http_request(port, "POST", "/logout",
                            {"Authorization": f"Bearer {logout_tokens[i]}"}, conn=conn)

    costs = {name: run(name, op) for name, op in
             (("authenticate", authenticate), ("login", login),
              ("refresh", refresh), ("logout", logout))}
    # A user already at auth.max_sessions_per_user (100): each login also
    # ends the oldest, after checking every entry of the user's index.
    for i in range(100):
        login_at_cap(i, None)[2].close()
    costs["login_at_cap"] = run("login_at_cap", login_at_cap)
    if api_token:
        def authenticate_api_token(i, conn):
            return http_request(port, "GET", "/authenticate",
                                {"Authorization": f"Bearer {api_token}"}, conn=conn)

        # The cache key of the token (src/store/redis.rs): its SHA-256, in hex.
        key = "tg:at:" + hashlib.sha256(api_token.encode()).hexdigest()
        costs["authenticate_api_token"] = run("authenticate_api_token", authenticate_api_token)
        # api_tokens.misses_per_address (60 a minute, SPEC §11) refuses more
        # misses from one address: the pre-check took one.
        costs["authenticate_api_token_miss"] = run("authenticate_api_token_miss", authenticate_api_token,
                                                   own=("DEL", key), n=min(n, 50))
    return costs


def session_memory(b: Bench, port: int, count: int) -> tuple[dict, Path]:
    r = b.redis()
    r.cmd("FLUSHALL")
    r.cmd("MEMORY", "PURGE")
    time.sleep(0.2)
    before = int(r.info("memory")["used_memory"])
    keys_before = r.cmd("DBSIZE")
    pool = b.make_sessions(port, count, b.work / "sessions")
    time.sleep(0.2)
    after = int(r.info("memory")["used_memory"])
    # Sessions, not keys: each session's user also has an index (tg:{u:<sub>}:idx),
    # one per session here, since every pool session has a user of its own —
    # the most the index can cost per session.
    count_keys = "return #redis.call('KEYS', ARGV[1])"
    keys = r.cmd("EVAL", count_keys, "0", "tg:{u:*}:s:*")
    index_keys = r.cmd("EVAL", count_keys, "0", "tg:{u:*}:idx")
    other_keys = r.cmd("DBSIZE") - keys_before - keys - index_keys
    first = pool.read_text().split("\n", 1)[0].split()
    claims = json.loads(base64.urlsafe_b64decode(first[0].split(".")[1] + "=="))
    key = f"tg:{{u:{claims['sub']}}}:s:{claims['sid']}"
    usage = r.cmd("MEMORY", "USAGE", key, "SAMPLES", "0")
    encoding = r.cmd("OBJECT", "ENCODING", key)
    fields = r.cmd("HLEN", key)
    cfg = dict(zip(*[iter(r.cmd("CONFIG", "GET", "hash-max-listpack-*"))] * 2))
    r.close()
    mem = {
        "sessions": keys,
        "user_index_keys": index_keys,
        "other_keys": other_keys,
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_session": round((after - before) / max(keys, 1), 1),
        "memory_usage_one_key": usage,
        "encoding_one_key": encoding.decode() if isinstance(encoding, bytes) else encoding,
        "fields_one_key": fields,
        "redis_config": {k.decode(): v.decode() for k, v in cfg.items()},
    }
    log(f"memory: {mem['bytes_per_session']} B/session over {keys} sessions "
        f"(with {index_keys} user indexes, {other_keys} other keys); "
        f"MEMORY USAGE of one key {usage} B ({mem['encoding_one_key']}, {fields} fields)")
    return mem, pool
