"""The harness every case runs in: the options, the cluster of the moment, and
what has been measured so far; one case at a time (`measure`: a pre-check, a
warm-up, wrk with the cores and Redis commands metered, a flood beside it when
asked for); session pools; the replicas' peak RSS."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from .clients import ClusterRedis, Redis, http_request
from .cluster import Cluster
from .common import BenchError, log
from .measure import CpuMeter, children_ticks, finish_wrk, run_wrk, start_wrk, vm_kb, wrk_command

# The flood starts this long before the honest run and ends about as long after.
FLOOD_LEAD_S = 0.5


class Bench:
    """One run: its options (`o`), the cluster of the moment (`state`, its
    cluster.json) and everything measured so far, which the report reads."""

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
        self.state: dict = {}
        # An extra nginx's master while a case runs on it (counted as nginx).
        self.extra_pids: list[int] = []
        self.argon2: dict = {}
        self.database_use: dict = {}
        self.cached: dict = {}

    # -- helpers --

    def redis(self) -> Redis | ClusterRedis:
        """The cluster's Redis; on a Redis Cluster, its masters together."""
        if self.state.get("redis_cluster"):
            return ClusterRedis([n["node"] for n in self.state["redis_cluster"]["nodes"]])
        return Redis(self.state["redis"]["port"])

    def redis_pids(self) -> list[int]:
        """Every redis-server of the cluster (all six nodes of a Redis Cluster)."""
        if self.state.get("redis_cluster"):
            return [n["pid"] for n in self.state["redis_cluster"]["nodes"] if n.get("pid")]
        return [self.state["redis"]["pid"]] if self.state["redis"].get("pid") else []

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
            "redis": self.redis_pids(),
            "nginx": ([self.state["nginx"]["pid"]] if self.state["nginx"].get("pid") else [])
            + list(self.extra_pids),
        }
        return CpuMeter(groups)

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
                      env: list[str] = (), redis_cluster: bool = False) -> None:
        redis = "a 6-node Redis Cluster" if redis_cluster else "redis"
        log(f"starting cluster '{name}': {redis} + {replicas} replica(s) + nginx (scripts/cluster)")
        self.cluster = Cluster(self.work / name, replicas, self.o.binary, self.o.nginx_workers,
                               list(self.o.env) + list(env), config, self.o.postgres,
                               redis_cluster)
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
            self.check_errors(f"{name} (warm-up)", warm)
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
        self.check_errors(name, res)
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

    def check_errors(self, name: str, res: dict) -> None:
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
        self.check_errors("session pool (login)", res)
        pool = Path(f"{prefix}.all")
        with pool.open("w") as out:
            for t in range(threads):
                out.write(Path(f"{prefix}.{t}").read_text())
        lines = sum(1 for _ in pool.open())
        if lines < count:
            raise BenchError(f"made {lines} of {count} sessions")
        return pool

    def hash_secret(self, secret: str) -> str:
        """`tokengate hash-secret`, once: the argon2id PHC string for the config."""
        run = subprocess.run([str(self.o.binary), "hash-secret"], input=secret + "\n",
                             capture_output=True, text=True, timeout=120)
        phc = run.stdout.strip()
        if run.returncode != 0 or not phc.startswith("$argon2id$"):
            raise BenchError(f"tokengate hash-secret failed ({run.returncode}): {run.stderr.strip()}")
        return phc

    def peak_rss(self) -> dict:
        """Each replica's peak and current RSS (VmHWM, VmRSS), by replica."""
        out = {}
        for rep in self.state["replicas"]:
            vm = vm_kb(rep["pid"])
            out[f"replica-{rep['index']}"] = {k: vm[k] for k in ("vm_hwm_kb", "vm_rss_kb")}
        return out

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
