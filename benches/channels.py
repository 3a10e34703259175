#!/usr/bin/env python3
"""PUBLISH or CLIENT TRACKING: the two ways Redis can tell replicas that a session changed.

With `auth.local_cache` on (SPEC §10) each replica keeps `sid → jti` in memory and must
learn of every change to a session at once. This measures the two channels on Redis
alone, with no tokengate in the way (`python3 benches/channels.py`, 40–60 s on 2 cores):

- **tracking**: N listener connections (the replicas), each `HELLO 3` and `CLIENT
  TRACKING ON BCAST PREFIX tg:s: NOLOOP`; the writer runs `src/store/scripts/end.lua`
  (the real logout: HGET, DEL of `tg:s:<sid>`, ZREM from `tg:u:<sub>`, ZCARD, DEL of the
  emptied index) by EVALSHA;
- **publish**: N listeners, each `HELLO 3` and `SUBSCRIBE tg:inv`; the writer runs the
  same script with `redis.call('PUBLISH', 'tg:inv', ARGV[1])` before its `return 1`;
  no tracking anywhere;
- **none**: the same script, no listener, no PUBLISH: the baseline both are compared with.

For N = 1 and 3 and each channel, on a fresh database of sessions made before any
listener connects:

1. invalidation delay: `--seq` (2,000) sequential logouts, each of a session of its own;
   one thread waits on the writer's and every listener's socket (selectors), and stamps
   each read with `time.perf_counter_ns()`. The delay of a listener runs from the
   writer's reading its EVALSHA reply to the listener's reading the message naming that
   sid (negative when the message came first), and from just before the writer sent it;
   p50/p99/max nearest rank over writes × listeners. Redis CPU per sequential write
   (`INFO cpu` used_cpu_sys + used_cpu_user around the run) is printed beside it;
2. Redis CPU per write over a burst of `--burst` (50,000) logouts pipelined (chunks of
   `--chunk` commands, two chunks in flight), the listeners drained as it runs;
3. the writer's writes/s in that burst (first send to last reply), and what each listener
   received (messages, sids, bytes);
4. what each channel reports, with one listener, on a session that expires by TTL
   (`PEXPIRE 50`), on keys evicted under `maxmemory` (allkeys-random) and on FLUSHALL;
5. the cost tracking puts on writes that do not matter to the cache: `--touches`
   (50,000) pipelined and `--seq-touches` (5,000) sequential `HSET tg:s:<sid> l <ms>`
   (an idle-clock touch) with tracking on N = 0, 1 and 3 connections, Redis CPU per HSET.
   PUBLISH costs touches nothing (no script publishes on a touch): its column is N = 0.

Every case runs `--rounds` (2) times, every other round in the reverse order so that a
drift of the machine favours no case; delays are pooled over the rounds, CPU is summed
over them (each round's figure printed beside it, to show the noise).

Redis: a `redis-server` of its own on a free loopback port, no persistence. Client:
Python, one thread, raw RESP over sockets; it shares the cores with Redis, so writes/s is
the client's ceiling as much as Redis's; Redis CPU per write is the figure to compare.
Prints a table and writes `--json` (target/bench/channels.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
END_LUA = ROOT / "src" / "store" / "scripts" / "end.lua"
PREFIX = "tg:s:"
CHANNEL = "tg:inv"
now_ns = time.perf_counter_ns


def log(message: str) -> None:
    print(f"channels: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# RESP2/RESP3
# --------------------------------------------------------------------------


class Incomplete(Exception):
    pass


class Push(list):
    """A RESP3 push (`>`): invalidations and pub/sub messages."""


class Err(str):
    pass


def enc(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def parse(buf, pos: int):
    """One RESP2/RESP3 value from buf at pos: (value, next pos); Incomplete if cut."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind, rest = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind in (b"+", b"("):
        return rest.decode(), pos
    if kind == b"-" or kind == b"!":
        return Err(rest.decode()), pos
    if kind == b":":
        return int(rest), pos
    if kind == b",":
        return float(rest), pos
    if kind == b"#":
        return rest == b"t", pos
    if kind == b"_":
        return None, pos
    if kind in (b"$", b"="):
        n = int(rest)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise Incomplete
        return bytes(buf[pos : pos + n]), pos + n + 2
    if kind in (b"*", b">", b"~"):
        n = int(rest)
        if n < 0:
            return None, pos
        items = Push() if kind == b">" else []
        for _ in range(n):
            v, pos = parse(buf, pos)
            items.append(v)
        return items, pos
    if kind in (b"%", b"|"):
        n = int(rest)
        m = {}
        for _ in range(n):
            k, pos = parse(buf, pos)
            v, pos = parse(buf, pos)
            m[k if not isinstance(k, list) else tuple(k)] = v
        if kind == b"|":  # an attribute: the value follows
            return parse(buf, pos)
        return m, pos
    raise BenchError(f"unexpected RESP type {kind!r}")


class Conn:
    def __init__(self, port: int, name: str):
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self) -> None:
        self.sock.close()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def values(self):
        """Every complete value buffered."""
        out = []
        while True:
            try:
                v, self.pos = parse(self.buf, self.pos)
            except Incomplete:
                break
            out.append(v)
        if self.pos > 1 << 20 or self.pos == len(self.buf):
            del self.buf[: self.pos]
            self.pos = 0
        return out

    def cmd(self, *args):
        """Send one command, return its reply (pushes before it are dropped)."""
        self.sock.sendall(enc(*args))
        while True:
            for v in self.values():
                if isinstance(v, Push) and not (
                    len(v) >= 1 and v[0] in (b"subscribe", "subscribe")
                ):
                    continue
                if isinstance(v, Err):
                    raise BenchError(f"redis: {v} (after {args[0]})")
                return v
            data = self.sock.recv(65536)
            if not data:
                raise BenchError("redis closed the connection")
            self.feed(data)

    def info(self, section: str) -> dict[str, str]:
        text = self.cmd("INFO", section).decode()
        return dict(line.split(":", 1) for line in text.splitlines()
                    if ":" in line and not line.startswith("#"))

    def cpu(self) -> float:
        i = self.info("cpu")
        return float(i["used_cpu_sys"]) + float(i["used_cpu_user"])


# --------------------------------------------------------------------------
# redis-server
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
         "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"redis-server exited with {proc.returncode}; see {workdir}/redis.log")
        try:
            c = Conn(port, "probe")
            if c.cmd("PING") == "PONG":
                c.close()
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise BenchError("redis-server did not answer within 10 s")


# --------------------------------------------------------------------------
# The pieces
# --------------------------------------------------------------------------


def scripts() -> dict[str, str]:
    end = END_LUA.read_text()
    marker = "return 1\n"
    if not end.rstrip().endswith("return 1"):
        raise BenchError(f"{END_LUA} no longer ends with 'return 1': adapt the PUBLISH variant")
    cut = end.rstrip().rfind("return 1")
    published = end[:cut] + f"redis.call('PUBLISH', '{CHANNEL}', ARGV[1])\n" + marker
    return {"plain": end, "publish": published}


def connect_listeners(port: int, mode: str, n: int) -> list[Conn]:
    out = []
    for i in range(n):
        c = Conn(port, f"listener{i}")
        c.cmd("HELLO", "3")
        if mode == "tracking":
            c.cmd("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", PREFIX, "NOLOOP")
        elif mode == "publish":
            c.cmd("SUBSCRIBE", CHANNEL)
        out.append(c)
    return out


def make_sessions(ctl: Conn, count: int, chunk: int = 1000) -> list[str]:
    """`count` sessions as login.lua leaves them (a hash and one member in tg:u:<sub>)."""
    sids = [str(uuid.uuid4()) for _ in range(count)]
    ms = int(time.time() * 1000)
    payloads = []
    for start in range(0, count, chunk):
        part = sids[start : start + chunk]
        data = b"".join(
            enc("HSET", PREFIX + sid, "s", f"user{start + i}", "a", os.urandom(16), "r",
                os.urandom(16), "e", ms + 86_400_000, "l", ms)
            + enc("PEXPIRE", PREFIX + sid, 86_400_000)
            + enc("ZADD", f"tg:u:user{start + i}", ms, sid)
            for i, sid in enumerate(part))
        payloads.append((data, 3 * len(part)))
    pipelined(ctl, payloads, [], depth=2)
    return sids


def pipelined(writer: Conn, payloads, listeners: list[Conn], depth: int) -> tuple[int, int]:
    """Send payloads (bytes, replies expected), at most `depth` in flight, reading replies
    (RESP2 one-line replies: integers, +OK) and draining listeners' sockets into their
    buffers. Returns (first send, last reply) in ns."""
    sel = selectors.DefaultSelector()
    sel.register(writer.sock, selectors.EVENT_READ, writer)
    for c in listeners:
        sel.register(c.sock, selectors.EVENT_READ, c)
    expected = [n for _, n in payloads]
    sent = 0
    inflight = 0
    got = 0
    needed = 0
    tail = b""
    t_first = now_ns()
    t_last = t_first
    try:
        while sent < len(payloads) or got < needed:
            while sent < len(payloads) and inflight < depth:
                writer.sock.sendall(payloads[sent][0])
                needed += expected[sent]
                sent += 1
                inflight += 1
            events = sel.select(timeout=10)
            if not events:
                raise BenchError(f"pipeline: {got} of {needed} replies, then nothing for 10 s")
            for key, _ in events:
                c = key.data
                data = c.sock.recv(1 << 20)
                if not data:
                    raise BenchError(f"{c.name}: redis closed the connection")
                if c is writer:
                    if (data[:1] == b"-" and tail in (b"", b"\n")) or b"\n-" in data:
                        raise BenchError(f"redis error in a pipeline: {data[:200]!r}")
                    got += data.count(b"\r\n") + (tail == b"\r" and data[:1] == b"\n")
                    tail = data[-1:]
                    t_last = now_ns()
                    # chunks whose replies are all in
                    done = 0
                    acc = 0
                    for n in expected[:sent]:
                        acc += n
                        if acc <= got:
                            done += 1
                    inflight = sent - done
                else:
                    c.feed(data)
    finally:
        sel.close()
    return t_first, t_last


def drain(listeners: list[Conn], idle_s: float = 0.1, within_s: float = 5.0) -> None:
    """Read listeners until none has sent anything for idle_s (at most within_s)."""
    if not listeners:
        return
    sel = selectors.DefaultSelector()
    for c in listeners:
        sel.register(c.sock, selectors.EVENT_READ, c)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            events = sel.select(timeout=idle_s)
            if not events:
                return
            for key, _ in events:
                data = key.data.sock.recv(1 << 20)
                if not data:
                    raise BenchError(f"{key.data.name}: redis closed the connection")
                key.data.feed(data)
    finally:
        sel.close()


def named_sids(v) -> list | None:
    """The sids (as str) a listener's message names; None for 'everything' (FLUSHALL);
    [] for a value that is not an invalidation."""
    if isinstance(v, Push) and len(v) >= 2 and v[0] == b"invalidate":
        if v[1] is None:
            return None
        return [k.decode()[len(PREFIX):] for k in v[1]]
    if isinstance(v, Push) and len(v) == 3 and v[0] == b"message" and v[1] == CHANNEL.encode():
        return [v[2].decode()]
    return []


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


# --------------------------------------------------------------------------
# The measurements
# --------------------------------------------------------------------------


def logout_case(port: int, ctl: Conn, mode: str, n: int, args, shas) -> dict:
    ctl.cmd("FLUSHALL")
    sids = make_sessions(ctl, args.seq + args.burst)
    seq_sids, burst_sids = sids[: args.seq], sids[args.seq :]
    sha = shas["publish" if mode == "publish" else "plain"]
    writer = Conn(port, "writer")
    listeners = connect_listeners(port, mode, n)
    res: dict = {"mode": mode, "listeners": n}
    try:
        # 1. sequential: the delay
        sel = selectors.DefaultSelector()
        sel.register(writer.sock, selectors.EVENT_READ, writer)
        for c in listeners:
            sel.register(c.sock, selectors.EVENT_READ, c)
        from_reply, from_send, last_from_reply, rtt = [], [], [], []
        stray = 0
        cpu0 = ctl.cpu()
        t_start = time.monotonic()
        for sid in seq_sids:
            cmd = enc("EVALSHA", sha, 1, PREFIX + sid, sid)
            t_reply = None
            seen: dict[Conn, int] = {}
            t0 = now_ns()
            writer.sock.sendall(cmd)
            deadline = time.monotonic() + 1.0
            while t_reply is None or len(seen) < n:
                if time.monotonic() > deadline:
                    raise BenchError(f"{mode} N={n}: no reply or message within 1 s for {sid}")
                for key, _ in sel.select(timeout=1.0):
                    c = key.data
                    data = c.sock.recv(65536)
                    t = now_ns()
                    if not data:
                        raise BenchError(f"{c.name}: redis closed the connection")
                    c.feed(data)
                    for v in c.values():
                        if c is writer:
                            if v != 1:
                                raise BenchError(f"end.lua answered {v!r} for a live session")
                            t_reply = t
                        elif sid in (named_sids(v) or []):
                            seen.setdefault(c, t)
                        else:
                            stray += 1
            rtt.append((t_reply - t0) / 1000)
            for t in seen.values():
                from_reply.append((t - t_reply) / 1000)
                from_send.append((t - t0) / 1000)
            if seen:
                last_from_reply.append((max(seen.values()) - t_reply) / 1000)
        seq_wall = time.monotonic() - t_start
        cpu1 = ctl.cpu()
        sel.close()
        res["seq"] = {"writes": len(seq_sids), "wall_s": seq_wall, "stray": stray,
                      "cpu_s": cpu1 - cpu0, "from_reply": from_reply, "from_send": from_send,
                      "last_from_reply": last_from_reply, "rtt": rtt}

        # 2./3. the burst, pipelined
        payloads = []
        for start in range(0, len(burst_sids), args.chunk):
            part = burst_sids[start : start + args.chunk]
            payloads.append((b"".join(enc("EVALSHA", sha, 1, PREFIX + s, s) for s in part),
                             len(part)))
        for c in listeners:
            c.values()
            c.buf.clear()
            c.pos = 0
        cpu0 = ctl.cpu()
        t_first, t_last = pipelined(writer, payloads, listeners, depth=2)
        drain(listeners)
        cpu1 = ctl.cpu()
        writes = len(burst_sids)
        want = set(burst_sids)
        per_listener = []
        for c in listeners:
            nbytes = len(c.buf)
            msgs = c.values()
            named = set()
            for v in msgs:
                named.update(named_sids(v) or [])
            per_listener.append({"messages": len(msgs), "sids": len(named & want),
                                 "missing": len(want - named), "bytes": nbytes})
        res["burst"] = {"writes": writes, "cpu_s": cpu1 - cpu0,
                        "wall_s": (t_last - t_first) / 1e9, "listeners": per_listener}
        left = ctl.cmd("DBSIZE")
        if left != 0:
            raise BenchError(f"{left} keys left after logging every session out")
    finally:
        writer.close()
        for c in listeners:
            c.close()
    return res


def touch_case(port: int, ctl: Conn, n: int, args) -> dict:
    ctl.cmd("FLUSHALL")
    sids = make_sessions(ctl, args.touch_sessions)
    writer = Conn(port, "writer")
    listeners = connect_listeners(port, "tracking" if n else "none", n)
    res: dict = {"mode": "tracking" if n else "none", "listeners": n}
    try:
        ms = int(time.time() * 1000)
        for label, count, chunk, depth in (
                ("pipelined", args.touches, args.chunk, 2),
                ("sequential", args.seq_touches, 1, 1)):
            payloads = []
            for start in range(0, count, chunk):
                payloads.append((b"".join(
                    enc("HSET", PREFIX + sids[i % len(sids)], "l", ms + i)
                    for i in range(start, min(count, start + chunk))),
                    min(chunk, count - start)))
            for c in listeners:
                c.buf.clear()
                c.pos = 0
            cpu0 = ctl.cpu()
            t_first, t_last = pipelined(writer, payloads, listeners, depth=depth)
            drain(listeners)
            cpu1 = ctl.cpu()
            keys = 0
            msgs = 0
            for c in listeners[:1]:
                for v in c.values():
                    msgs += 1
                    keys += len(named_sids(v) or [])
            res[label] = {"writes": count, "cpu_s": cpu1 - cpu0,
                          "wall_s": (t_last - t_first) / 1e9,
                          "listener0_messages": msgs, "listener0_keys": keys}
    finally:
        writer.close()
        for c in listeners:
            c.close()
    return res


def watch(listener: Conn, seconds: float, t0: int) -> list[tuple[float, object]]:
    """Messages a listener gets within `seconds`, each with its ms since t0."""
    out = []
    deadline = time.monotonic() + seconds
    listener.sock.settimeout(0.02)
    try:
        while time.monotonic() < deadline:
            try:
                data = listener.sock.recv(65536)
            except socket.timeout:
                continue
            t = now_ns()
            if not data:
                raise BenchError("listener: redis closed the connection")
            listener.feed(data)
            for v in listener.values():
                out.append(((t - t0) / 1e6, v))
    finally:
        listener.sock.settimeout(10)
    return out


def describe(msgs) -> str:
    if not msgs:
        return "nothing"
    parts = []
    for ms, v in msgs:
        names = named_sids(v)
        what = "everything (null)" if names is None else f"{len(names)} key(s)"
        parts.append(f"{what} at {ms:.1f} ms")
    return "; ".join(parts)


def edge_cases(port: int, ctl: Conn, mode: str) -> dict:
    """TTL expiry, eviction and FLUSHALL, one listener."""
    res: dict = {"mode": mode}
    ctl.cmd("FLUSHALL")
    listener = connect_listeners(port, mode, 1)[0]
    writer = Conn(port, "writer")
    try:
        # expiry
        sid = str(uuid.uuid4())
        writer.cmd("HSET", PREFIX + sid, "s", "u", "a", "x")
        t0 = now_ns()
        writer.cmd("PEXPIRE", PREFIX + sid, 50)
        msgs = watch(listener, 1.0, t0)
        at_write = [(ms, v) for ms, v in msgs if ms < 40]
        at_expiry = [(ms, v) for ms, v in msgs if ms >= 40 and sid in (named_sids(v) or [])]
        res["expiry"] = {"messages_at_write": len(at_write),
                         "expiry_message_ms": at_expiry[0][0] if at_expiry else None,
                         "gone": ctl.cmd("EXISTS", PREFIX + sid) == 0,
                         "expired_keys": int(ctl.info("stats")["expired_keys"])}
        # eviction
        sids = make_sessions(ctl, 2000)
        watch(listener, 0.2, now_ns())  # tracking: the sessions' own writes, dropped
        listener.buf.clear()
        listener.pos = 0
        used = int(ctl.info("memory")["used_memory"])
        ctl.cmd("CONFIG", "SET", "maxmemory-policy", "allkeys-random")
        ctl.cmd("CONFIG", "SET", "maxmemory", used + 256 * 1024)
        blob = b"x" * 1024
        payload = b"".join(enc("SET", f"fill:{i}", blob) for i in range(1500))
        pipelined(writer, [(payload, 1500)], [listener], depth=1)
        evicted = int(ctl.info("stats")["evicted_keys"])
        ctl.cmd("CONFIG", "SET", "maxmemory", 0)
        msgs = watch(listener, 0.3, now_ns())
        drained = listener.values()
        named = set()
        for _, v in msgs:
            named.update(named_sids(v) or [])
        for v in drained:
            named.update(named_sids(v) or [])
        alive = set(s for s in sids if ctl.cmd("EXISTS", PREFIX + s))
        gone = set(sids) - alive
        res["eviction"] = {"evicted_keys": evicted, "sessions_evicted": len(gone),
                           "sessions_reported": len(gone & named)}
        # FLUSHALL
        listener.buf.clear()
        listener.pos = 0
        t0 = now_ns()
        ctl.cmd("FLUSHALL")
        msgs = watch(listener, 0.5, t0)
        res["flushall"] = {"messages": describe(msgs),
                           "everything": any(named_sids(v) is None for _, v in msgs)}
    finally:
        writer.close()
        listener.close()
    return res


def spread(values: list[float]) -> dict:
    return {"p50": pct(values, 50), "p99": pct(values, 99), "max": max(values),
            "min": min(values)}


def summarise_logout(rounds: list[dict]) -> dict:
    """One (mode, N) over its rounds: delay samples pooled, CPU summed over writes (the
    per-round figures kept, to see the noise)."""
    first = rounds[0]
    seq = [r["seq"] for r in rounds]
    burst = [r["burst"] for r in rounds]
    out = {"mode": first["mode"], "listeners": first["listeners"], "rounds": len(rounds)}
    pool = lambda k: [x for s in seq for x in s[k]]  # noqa: E731
    out["seq"] = {
        "writes": sum(s["writes"] for s in seq), "stray_messages": sum(s["stray"] for s in seq),
        "cpu_us_per_write": sum(s["cpu_s"] for s in seq) * 1e6 / sum(s["writes"] for s in seq),
        "cpu_us_per_write_rounds": [s["cpu_s"] * 1e6 / s["writes"] for s in seq],
        "rtt_us": spread(pool("rtt")),
    }
    if first["listeners"]:
        fr = pool("from_reply")
        out["seq"]["delay_from_reply_us"] = spread(fr)
        out["seq"]["delay_from_reply_us"]["message_before_reply"] = (
            sum(1 for d in fr if d < 0) / len(fr))
        out["seq"]["delay_from_send_us"] = spread(pool("from_send"))
        out["seq"]["last_listener_from_reply_us"] = spread(pool("last_from_reply"))
    writes = sum(b["writes"] for b in burst)
    out["burst"] = {
        "writes": writes,
        "cpu_us_per_write": sum(b["cpu_s"] for b in burst) * 1e6 / writes,
        "cpu_us_per_write_rounds": [b["cpu_s"] * 1e6 / b["writes"] for b in burst],
        "writes_per_s": writes / sum(b["wall_s"] for b in burst),
        "writes_per_s_rounds": [b["writes"] / b["wall_s"] for b in burst],
        "listeners": [x for b in burst for x in b["listeners"]],
    }
    return out


def summarise_touch(rounds: list[dict]) -> dict:
    first = rounds[0]
    out = {"mode": first["mode"], "listeners": first["listeners"], "rounds": len(rounds)}
    for label in ("pipelined", "sequential"):
        rs = [r[label] for r in rounds]
        writes = sum(r["writes"] for r in rs)
        out[label] = {
            "writes": writes,
            "cpu_us_per_write": sum(r["cpu_s"] for r in rs) * 1e6 / writes,
            "cpu_us_per_write_rounds": [r["cpu_s"] * 1e6 / r["writes"] for r in rs],
            "writes_per_s": writes / sum(r["wall_s"] for r in rs),
            "listener0_messages": sum(r["listener0_messages"] for r in rs),
            "listener0_keys": sum(r["listener0_keys"] for r in rs),
        }
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def rounds(figures: dict, digits: int) -> str:
    return ", ".join(f"{x:.{digits}f}" for x in figures["cpu_us_per_write_rounds"])


def report(results: dict) -> str:
    lines = []
    lines.append(f"Redis {results['redis']}, {results['cpus']} cores, {results['cpu_model']}; "
                 f"load average {results['loadavg_start']:.2f} at the start, "
                 f"{results['loadavg_end']:.2f} at the end, {results['wall_s']:.0f} s")
    lines.append("")
    lines.append("logout (end.lua) | N | delay from reply p50/p99/max µs | from send p50/p99/max µs "
                 "| Redis µs/write seq | µs/write pipelined | writes/s pipelined | "
                 "messages per listener per burst | sids missed")
    lines.append("(Redis CPU: over all rounds, each round in brackets)")
    for r in results["logout"]:
        s, b = r["seq"], r["burst"]
        if r["listeners"]:
            d, f = s["delay_from_reply_us"], s["delay_from_send_us"]
            delay = f"{d['p50']:.0f} / {d['p99']:.0f} / {d['max']:.0f}"
            send = f"{f['p50']:.0f} / {f['p99']:.0f} / {f['max']:.0f}"
            counts = [x["messages"] for x in b["listeners"]]
            msgs = (f"{min(counts)}" if min(counts) == max(counts)
                    else f"{min(counts)}–{max(counts)}")
            missed = sum(x["missing"] for x in b["listeners"])
        else:
            delay = send = msgs = "-"
            missed = "-"
        lines.append(f"{r['mode']:<8} | {r['listeners']} | {delay} | {send} | "
                     f"{s['cpu_us_per_write']:.1f} ({rounds(s, 1)}) | "
                     f"{b['cpu_us_per_write']:.2f} ({rounds(b, 2)}) | "
                     f"{b['writes_per_s']:,.0f} | {msgs} | {missed}")
    lines.append("")
    lines.append("touch (HSET tg:s:) | N tracking | µs/HSET pipelined | writes/s | "
                 "pushes (keys) to listener 0 | µs/HSET sequential | pushes (keys)")
    for r in results["touch"]:
        p, q = r["pipelined"], r["sequential"]
        lines.append(f"{r['mode']:<8} | {r['listeners']} | {p['cpu_us_per_write']:.2f} "
                     f"({rounds(p, 2)}) | "
                     f"{p['writes_per_s']:,.0f} | {p['listener0_messages']} "
                     f"({p['listener0_keys']}) | {q['cpu_us_per_write']:.1f} ({rounds(q, 1)}) | "
                     f"{q['listener0_messages']} ({q['listener0_keys']})")
    lines.append("")
    for r in results["edges"]:
        e, v, f = r["expiry"], r["eviction"], r["flushall"]
        exp = (f"pushed {e['expiry_message_ms']:.0f} ms after PEXPIRE 50"
               if e["expiry_message_ms"] is not None else "nothing within 1 s")
        lines.append(f"{r['mode']}: TTL expiry: {exp} (key gone: {e['gone']}, "
                     f"{e['messages_at_write']} message(s) at the HSET/PEXPIRE); eviction: "
                     f"{v['sessions_reported']} of {v['sessions_evicted']} evicted sessions "
                     f"reported; FLUSHALL: {f['messages']}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq", type=int, default=2000, help="sequential logouts per case")
    ap.add_argument("--burst", type=int, default=50_000, help="pipelined logouts per case")
    ap.add_argument("--chunk", type=int, default=500, help="commands per pipelined send")
    ap.add_argument("--touches", type=int, default=50_000, help="pipelined HSETs per case")
    ap.add_argument("--seq-touches", type=int, default=5000, help="sequential HSETs per case")
    ap.add_argument("--touch-sessions", type=int, default=10_000)
    ap.add_argument("--listeners", default="1,3", help="N values")
    ap.add_argument("--rounds", type=int, default=2,
                    help="times each case runs, every other round in reverse order")
    ap.add_argument("--json", default=str(ROOT / "target" / "bench" / "channels.json"))
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        raise BenchError("redis-server is not installed")
    ns = [int(x) for x in args.listeners.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="tg-channels-"))
    proc, port = start_redis(workdir)
    t_start = time.monotonic()
    try:
        ctl = Conn(port, "ctl")
        shas = {k: ctl.cmd("SCRIPT", "LOAD", v).decode() for k, v in scripts().items()}
        version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                 text=True).stdout.strip()
        model = next((l.split(":", 1)[1].strip() for l in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if l.startswith("model name")), platform.processor())
        results: dict = {"loadavg_start": os.getloadavg()[0], "redis": version, "cpus": os.cpu_count(), "cpu_model": model,
                         "args": vars(args), "logout": [], "touch": [], "edges": []}
        cases = [("none", 0)]
        for n in ns:
            cases += [("tracking", n), ("publish", n)]
        raw: dict = {}
        for i in range(args.rounds):
            # every other round in the reverse order, so drift favours no case
            for mode, n in (cases if i % 2 == 0 else cases[::-1]):
                log(f"round {i + 1}: logout, {mode}, N={n}")
                raw.setdefault((mode, n), []).append(logout_case(port, ctl, mode, n, args, shas))
        results["logout"] = [summarise_logout(raw[c]) for c in cases]
        raw = {}
        touch_ns = [0] + ns
        for i in range(args.rounds):
            for n in (touch_ns if i % 2 == 0 else touch_ns[::-1]):
                log(f"round {i + 1}: touch, tracking on N={n}")
                raw.setdefault(n, []).append(touch_case(port, ctl, n, args))
        results["touch"] = [summarise_touch(raw[n]) for n in touch_ns]
        for mode in ("tracking", "publish"):
            log(f"expiry, eviction, FLUSHALL: {mode}")
            results["edges"].append(edge_cases(port, ctl, mode))
        results["wall_s"] = time.monotonic() - t_start
        results["loadavg_end"] = os.getloadavg()[0]
        ctl.close()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    text = report(results)
    print(text)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    log(f"{results['wall_s']:.1f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(2)
