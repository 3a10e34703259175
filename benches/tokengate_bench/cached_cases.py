"""Cached cases (SPEC §10, auth.local_cache on): the load cases answered from
memory, Redis commands per cached authenticate, the invalidation delay between
two replicas, and a replica's RSS with many sessions cached."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .clients import http_request
from .cluster import ExtraReplica
from .common import BenchError, log
from .measure import percentile, run_wrk, vm_kb
from .nginx_cases import measure_on_front, shipped_front, unix_socket

if TYPE_CHECKING:
    from .harness import Bench

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


def tracking_clients(b: Bench) -> int:
    r = b.redis()
    listing = r.cmd("CLIENT", "LIST").decode()
    r.close()
    return sum(1 for line in listing.splitlines() if f" name={TRACKING_NAME} " in line)


def wait_tracking(b: Bench, replicas: int, within: float = 15.0) -> None:
    """Until every replica's tracking connection is up (until then the
    cache is bypassed, and a case would measure strict mode)."""
    deadline = time.monotonic() + within
    while tracking_clients(b) < replicas:
        if time.monotonic() > deadline:
            raise BenchError(f"fewer than {replicas} tracking connections (name={TRACKING_NAME}) "
                             f"within {within}s: is the local cache in this binary?")
        time.sleep(0.05)
    # Tracking is switched on right after the name is set.
    time.sleep(0.1)


def run(b: Bench, want) -> None:
    """The cached cluster: replica 0 (behind nginx, and over its Unix socket
    behind an extra nginx) and an extra replica 1, both with
    auth.local_cache on. Load cases, commands per authenticate, the
    invalidation delay between the two replicas, RSS with many sessions
    cached."""
    o = b.o
    name = "cluster-cached"
    max_entries = max(100_000, 2 * o.cached_sessions)
    cache_env = ["TOKENGATE__AUTH__LOCAL_CACHE__ENABLED=true",
                 f"TOKENGATE__AUTH__LOCAL_CACHE__MAX_ENTRIES={max_entries}"]
    uds = unix_socket(b, want, name, "nginx_tokengate_auth_uds_cached")
    uds_env = [f"TOKENGATE__SERVER__UNIX_SOCKET={uds}"] if uds else []
    b.start_cluster(1, name, env=cache_env + uds_env)
    other = ExtraReplica(b.state, o.binary, 1, list(o.env) + cache_env)
    b.cached["settings"] = {"replicas": 2, "max_entries": max_entries,
                            "touch_interval": "default (auth.auto_logout / 100)",
                            "env": cache_env}
    try:
        other_port = other.up()
        wait_tracking(b, 2)
        _cases(b, want, other_port, uds)
        for k, v in b.peak_rss().items():
            b.rss[f"cached-{k}"] = v
    finally:
        other.down()
        b.stop_cluster()
    for case in CACHED_LOAD_CASES:
        b.note_noise(only=case)


def _cases(b: Bench, want, other_port: int, uds: str | None) -> None:
    """The cached cluster's cases, once both replicas track invalidations."""
    o = b.o
    port = b.replica_port(0)
    nginx = b.state["nginx"]["port"]
    paths = b.state["paths"]
    token = b.login(other_port)["access"]
    bearer = f"Authorization: Bearer {token}"
    hdr = {"Authorization": f"Bearer {token}"}

    def check_2xx(p, path):
        return b.expect_2xx(p, path, headers=hdr, times=2)

    if want("authenticate_cached"):
        b.measure("authenticate_cached", f"http://127.0.0.1:{port}/authenticate", "get.lua",
                  [bearer], redis_ops=True, check=check_2xx(port, "/authenticate"))
    if want("nginx_tokengate_auth_cached"):
        b.measure("nginx_tokengate_auth_cached", f"http://127.0.0.1:{nginx}{paths['protected']}",
                  "get.lua", [bearer], redis_ops=True,
                  check=check_2xx(nginx, paths["protected"]))
    if uds:
        app_port = b.state["nginx"]["app_port"]
        measure_on_front(b, "nginx_tokengate_auth_uds_cached",
                         lambda p: shipped_front(p, f"unix:{uds}", app_port), "/ping",
                         [bearer], root_workers=True, redis_ops=True)
    b.cached["cost"] = cached_costs(b, port, other_port, o.cached_cost_ops)
    b.cached["cost_touch_1s"] = touch_costs(b, other_port, 1.5 if o.smoke else 3.5)
    if want("invalidation_delay"):
        b.cached["invalidation"] = invalidation_delay(b, other_port, port, o.trials)
    if want("cached_rss"):
        b.cached["rss"] = cached_rss(b, other_port, port, o.cached_sessions)


def cached_costs(b: Bench, port: int, other_port: int, n: int) -> dict:
    """Redis commands and round trips per authenticate with the cache on:
    INFO around `n` sequential requests on one kept-alive connection, over
    a few sessions made on the other replica, after one request each (the
    look-up that fills the entry). Without INFO itself and PING (the gRPC
    health follower's and the tracking connection's heartbeat, once a
    second each, whatever the requests). Also from the load runs: every
    command Redis counted during them, per request."""
    tokens = [b.login(other_port, 500_000 + i)["access"] for i in range(10)]
    out = sequential_cached(b, port, tokens, n)
    load = {}
    for row in b.results:
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


def sequential_cached(b: Bench, port: int, tokens: list[str], n: int) -> dict:
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
    r = b.redis()
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


def touch_costs(b: Bench, login_port: int, seconds: float) -> dict:
    """The write-behind's share: one more replica (index 2) with
    auth.touch_interval 1s, sequential authenticates of one session for
    about `seconds` (a fixed count, sized from a first second's rate), so
    that every interval's touch and the look-up after it are counted."""
    env = list(b.o.env) + b.cached["settings"]["env"] + ["TOKENGATE__AUTH__TOUCH_INTERVAL=1s"]
    extra = ExtraReplica(b.state, b.o.binary, 2, env)
    try:
        port = extra.up()
        wait_tracking(b, 3)
        token = b.login(login_port, 600_000)["access"]
        probe = sequential_cached(b, port, [token], 200)
        rate = 200 / max(probe["elapsed_s"], 1e-3)
        out = sequential_cached(b, port, [token], max(1000, int(rate * seconds)))
    finally:
        extra.down()
    out["touch_interval_s"] = 1
    log(f"cached cost with auth.touch_interval 1s: {out['commands']:.5f} commands "
        f"({out['evalsha']:.5f} EVALSHA) per authenticate over {out['requests']} requests "
        f"in {out['elapsed_s']} s")
    return out


def invalidation_delay(b: Bench, a_port: int, b_port: int, trials: int) -> dict:
    """Logout on replica A, then how long replica B, which had the session
    in memory, goes on accepting it: per trial, login on A, authenticate
    twice on B (the second from memory), logout on A, then authenticate on
    B back to back until 401. Bounded: INVALIDATION_TRIAL_S per trial,
    INVALIDATION_BUDGET_S in all."""
    conn_a = conn_b = None
    delays, polls, stale = [], [], 0
    r = b.redis()
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
            b.notes.append(f"invalidation_delay: {done} of {trials} trials within "
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
        b.failures.append(f"invalidation_delay: replica 0 still accepted a logged-out session "
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


def cached_rss(b: Bench, login_port: int, port: int, count: int) -> dict:
    """Replica 0's VmRSS before and after it holds `count` more sessions in
    memory: made by /login on the other replica (wrk, --connections), then
    each authenticated once on replica 0 (wrk/authpool.lua), which fills
    an entry per session. A sample is then asked for again: answered from
    memory, Redis sees nothing."""
    pid = b.state["replicas"][0]["pid"]
    before = vm_kb(pid)
    pool = b.make_sessions(login_port, count, b.work / "cached-sessions")
    prefix = b.work / "cached-fill"
    threads = b.o.threads
    for t in range(threads):
        Path(f"{prefix}.{t}.done").unlink(missing_ok=True)
    started = time.monotonic()
    res = run_wrk(f"http://127.0.0.1:{port}/authenticate", "authpool.lua", 600, threads,
                  b.o.connections, args=(pool, threads, prefix), stop_file=prefix,
                  stop_count=threads)
    fill_s = time.monotonic() - started
    b.check_errors("cached_rss (fill)", res)
    time.sleep(0.5)
    after = vm_kb(pid)
    # A sample of them again: from memory, so no command reaches Redis.
    tokens = [l.split()[0] for l in pool.read_text().splitlines() if l]
    sample = tokens[:: max(1, len(tokens) // 1000)]
    r = b.redis()
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
