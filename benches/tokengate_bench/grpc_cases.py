"""gRPC cases: AuthApi/Refresh to the replica's grpc.port and through nginx's
gRPC server, with examples/grpc_load.rs (tonic's client)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from .common import BenchError, log

if TYPE_CHECKING:
    from .harness import Bench


def runner(b: Bench, url: str, pool: Path):
    """A `measure` runner: examples/grpc_load.rs against `url`, its JSON
    turned into wrk's result shape (a failed call counts as a non-2xx)."""
    o = b.o

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


def run(b: Bench, want) -> None:
    """grpc_refresh and grpc_refresh_nginx on the strict cluster, each over a
    pool of fresh sessions (successors chained by grpc_load)."""
    port = b.replica_port(0)
    if not b.o.grpc_load:
        b.notes.append("grpc_refresh: skipped (no --grpc-load; scripts/bench builds examples/grpc_load)")
        return
    direct = b.state["replicas"][0].get("grpc_url")
    through = b.state.get("grpc_url")
    if not direct or not through:
        raise BenchError("cluster.json has no gRPC URLs: a scripts/cluster older than this bench?")
    for name, url in (("grpc_refresh", direct), ("grpc_refresh_nginx", through)):
        if not want(name):
            continue
        # Fresh sessions (HTTP /login), two chains' worth per stream: a chain
        # whose call fails starts over from the pool.
        pool = b.make_sessions(port, b.o.grpc_streams * 2, b.work / name)
        b.measure(name, url, "", runner=runner(b, url, pool), redis_ops=True,
                  connections=b.o.grpc_streams)
        row = b.results[-1]
        row["grpc"] = {"connections": b.o.grpc_connections, "streams": b.o.grpc_streams}
