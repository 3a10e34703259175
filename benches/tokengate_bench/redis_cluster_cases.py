"""Redis Cluster (SPEC §16): /login, /refresh and /authenticate (strict) on
one Redis and on a Redis Cluster of 3 masters and 3 replicas
(`scripts/cluster --redis-cluster`), one tokengate replica each, in the same
run: the throughput and CPU of each side, and the Redis commands a request
costs, counted over every master."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .harness import Bench

# (case prefix, on a Redis Cluster)
SIDES = (("redis1", False), ("cluster3", True))
OPS = ("login", "refresh", "authenticate")
REDIS_CLUSTER_CASES = tuple(f"{side}_{op}" for side, _ in SIDES for op in OPS)


def run(b: Bench, want) -> None:
    for side, on_cluster in SIDES:
        names = [f"{side}_{op}" for op in OPS]
        if not any(want(n) for n in names):
            continue
        b.start_cluster(1, f"redis-{side}", redis_cluster=on_cluster)
        try:
            measure_side(b, want, side)
        finally:
            b.stop_cluster()


def measure_side(b: Bench, want, side: str) -> None:
    port = b.replica_port(0)
    url = f"http://127.0.0.1:{port}"
    if want(f"{side}_login"):
        # Every login a user of its own: spread over every master's slots.
        b.measure(f"{side}_login", f"{url}/login", "login.lua", redis_ops=True)
    if want(f"{side}_refresh"):
        # Each thread rotates its own share of the pool, successors chained
        # (refresh.lua); no warm-up, which would rotate the pool's tokens.
        pool = b.make_sessions(port, min(b.o.sessions, 5000), b.work / f"{side}-refresh")
        b.measure(f"{side}_refresh", f"{url}/refresh", "refresh.lua",
                  args=(pool, b.o.threads), redis_ops=True, warmup=False)
    if want(f"{side}_authenticate"):
        token = b.login(port)["access"]
        header = {"Authorization": f"Bearer {token}"}
        b.measure(f"{side}_authenticate", f"{url}/authenticate", "get.lua",
                  [f"Authorization: Bearer {token}"], redis_ops=True,
                  check=b.expect_2xx(port, "/authenticate", headers=header))
