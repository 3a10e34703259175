#!/usr/bin/env python3
"""The compose deployment on a real Docker engine (SPEC §12), run by scripts/compose-test.

On a fresh copy of the tree (what git tracks, as it is on disk), with nginx published on
free loopback ports through an override and nothing made beforehand:

  1. the one command, `docker compose up --build --scale jwt=3` (timed), then least
     privilege: PostgreSQL's role, Redis' ACL, the secrets' owners and modes;
  2. the original service's load flow through nginx (ping, login, authenticate,
     refresh, logout; 300 virtual users), 0 failed, p50/p95/p99 printed;
  3. a replica killed (`docker kill`) under /authenticate traffic: 0 failed;
  4. Redis stopped: /login answers 503; started again: /login answers 200 with the
     same replicas (none restarted);
  5. PostgreSQL stopped: /register answers 503 while a session still authenticates;
     started again: /register answers 201;
  6. `--scale jwt=5` then `--scale jwt=2` under traffic: 0 failed;
  7. `docker compose exec jwt tokengate token create` makes a token nginx lets through;
  8. `down` then `up`: users, API tokens and secrets are still there;
  9. compose.uds.yaml (one replica on a Unix socket) comes up and serves;
 10. compose.secrets.yaml with files from scripts/init-secrets: the replicas use them.

Everything runs under one project name and ends with `down -v` whatever happens.
Exit status 0 only if every check passed. Usage: compose_test.py [--keep-tree] [--only CHECK,...]

--only (or COMPOSE_TEST_ONLY) runs step 1 and then only the named checks, in the order
above: load, kill, redis, postgres, scale, cli, restart, uds, secrets. E.g.
`COMPOSE_TEST_ONLY=scale scripts/compose-test` to chase the scaling check alone.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))
import seedflow  # noqa: E402  (the original load flow, shared with scripts/bench --seedflow)

PROJECT = "tgcompose"
BASE = ["-f", "compose.yaml"]
UDS = ["-f", "compose.yaml", "-f", "compose.uds.yaml"]
OWN = ["-f", "compose.yaml", "-f", "compose.secrets.yaml"]
JSON = {"Content-Type": "application/json"}

failures: list[str] = []
figures: list[str] = []
# The checks after step 1, in the order they run; --only picks some of them.
CHECKS = ("load", "kill", "redis", "postgres", "scale", "cli", "restart", "uds", "secrets")


def log(msg: str) -> None:
    print(f"compose-test: {msg}", flush=True)


def need(cond, what: str) -> None:
    log(f"{'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        failures.append(what)


def figure(what: str) -> None:
    figures.append(what)
    log(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(probe, what: str, timeout: float = 60.0, interval: float = 0.25):
    """probe() until it returns something true; that value, or a failed check."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as e:
            last = e
        if last and not isinstance(last, OSError):
            return last
        time.sleep(interval)
    need(False, f"{what} (within {timeout:g} s; last: {last!r})")
    return None


class Deployment:
    """`docker compose` on the copied tree, under one project name."""

    def __init__(self, tree: Path, override: Path):
        self.tree = tree
        self.override = ["-f", str(override)]

    def compose(self, *args: str, files=BASE, timeout: float = 900, check: bool = True, quiet: bool = False):
        cmd = ["docker", "compose", "-p", PROJECT, *files, *self.override, *args]
        out = subprocess.run(cmd, cwd=self.tree, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        if not quiet and out.returncode != 0:
            log(f"{' '.join(args)} answered {out.returncode}: {out.stderr.strip()[-500:]}")
        return out

    def up(self, *args: str, files=BASE) -> float:
        started = time.monotonic()
        self.compose("up", "-d", "--wait", *args, files=files)
        return time.monotonic() - started

    def ids(self, service: str, files=BASE) -> list[str]:
        return sorted(self.compose("ps", "-q", service, files=files).stdout.split())

    def started_at(self, ids: list[str]) -> dict[str, str]:
        out = subprocess.run(["docker", "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", *ids],
                             capture_output=True, text=True, check=True).stdout
        return dict(line.split() for line in out.splitlines())

    def secret(self, name: str) -> str:
        return self.compose("run", "--rm", "-T", "secrets", "print", name).stdout.strip()


def request(port: int, method: str, path: str, headers=None, body=None, timeout: float = 10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, body=data, headers={**(JSON if body is not None else {}), **(headers or {})})
        resp = conn.getresponse()
        payload = resp.read()
        try:
            doc = json.loads(payload) if payload else {}
        except ValueError:
            doc = {"raw": payload[:200]}
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, doc
    finally:
        conn.close()


class Traffic:
    """Steady requests through nginx from a background thread until the block ends:
    `workers` loops, each on its own keep-alive connection, over `steps` (method,
    path, Authorization, body). Anything but the expected status counts as failed."""

    def __init__(self, port: int, steps, workers: int = 16):
        self.port, self.steps, self.workers = port, steps, workers
        self.sent = self.failed = 0
        self.samples: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.main()))

    async def worker(self) -> None:
        conn = seedflow.Conn(self.port)
        try:
            while not self.stop.is_set():
                for method, path, authorization, body, expect in self.steps:
                    try:
                        async with asyncio.timeout(15):
                            await conn.connect()
                            status, payload = await conn.request(method, path, None, body, authorization)
                    except (OSError, TimeoutError, seedflow.HttpError, asyncio.IncompleteReadError) as e:
                        status, payload = 0, repr(e).encode()
                        await conn.close()
                    self.sent += 1
                    if status != expect:
                        self.failed += 1
                        if len(self.samples) < 5:
                            self.samples.append(f"{method} {path}: {status} {payload[:120]!r}")
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    async def main(self) -> None:
        await asyncio.gather(*(self.worker() for _ in range(self.workers)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(60)

    def verdict(self, what: str) -> None:
        need(self.sent > 100 and self.failed == 0,
             f"{what}: {self.sent} requests, {self.failed} failed {self.samples or ''}")


def copy_tree(dest: Path) -> None:
    """What git tracks (plus new files it does not ignore), as they are on disk."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def least_privilege(d: Deployment) -> None:
    psql = ["exec", "-T", "db", "psql", "-U", "postgres", "-d", "tokengate", "-Atc"]
    row = d.compose(*psql, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                           "WHERE rolname = 'tokengate'").stdout.strip()
    need(row == "f|f|f", f"PostgreSQL: the replicas' role is no superuser, creates no databases or roles ({row!r})")
    owners = d.compose(*psql, "SELECT DISTINCT schemaname || ':' || tableowner FROM pg_tables "
                              "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").stdout.split()
    need(owners == ["tokengate:tokengate"], f"PostgreSQL: every table is in schema tokengate, owned by it ({owners})")
    redis = "REDISCLI_AUTH=$(cat /run/secrets/redis_password) redis-cli "
    for cmd in ("CONFIG GET maxmemory", "FLUSHALL", "DEBUG SLEEP 0", "KEYS *"):
        out = d.compose("exec", "-T", "cache", "sh", "-c", redis + cmd).stdout
        # DEBUG is refused before the ACL is asked (enable-debug-command no, Redis 7's default).
        refused = "NOPERM" in out or "DEBUG command not allowed" in out
        need(refused, f"Redis: the app's user may not {cmd.split()[0]} ({out.strip()[:80]!r})")
    listing = d.compose("run", "--rm", "-T", "--entrypoint", "sh", "secrets", "-c",
                        "stat -c '%n %u %a' /secrets/* /secrets/*/*").stdout.split("\n")
    modes = {name: f"{uid} {mode}" for name, uid, mode in (line.rsplit(" ", 2) for line in listing if line)}
    expected = {"/secrets/jwt": "65532 500", "/secrets/cache": "0 700", "/secrets/db": "0 755",
                **{f"/secrets/jwt/{n}": "65532 400" for n in ("jwt_secret", "login_client_secret", "admin_token",
                                                               "redis_password", "db_password")},
                "/secrets/cache/redis_password": "0 400",
                "/secrets/db/db_password": "0 444", "/secrets/db/db_admin_password": "0 444"}
    need(modes == expected, f"secrets: one volume per service, owners and modes as documented ({modes})")


def load_flow(port: int, basic: str) -> None:
    o = SimpleNamespace(vus=300, ramp=5.0, hold=20.0, think_max=1.0, timeout=30.0, login_auth=basic)
    stats, wall, _ = asyncio.run(seedflow.scenario(port, o))
    every = [ms for step in seedflow.STEPS for ms in stats.latency_ms[step]]
    total = seedflow.summary(every, sum(stats.failed.values()))
    lat = total["latency_ms"]
    figure(f"load flow: 300 VUs, {total['requests']} requests in {wall:.1f} s, {stats.iterations} iterations, "
           f"{total['failed']} failed; p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms")
    for step in seedflow.STEPS:
        s = seedflow.summary(stats.latency_ms[step], stats.failed[step])
        figure(f"  {step:<12} {s['requests']:>6} requests, p50 {s['latency_ms']['p50']:.1f} ms, "
               f"p95 {s['latency_ms']['p95']:.1f} ms, p99 {s['latency_ms']['p99']:.1f} ms")
    need(total["requests"] > 1000 and total["failed"] == 0,
         f"the original load flow through nginx: 0 failed {stats.samples[:5] or ''}")


def scenario(d: Deployment, port: int, only: frozenset[str] = frozenset()) -> None:
    want = lambda check: not only or check in only
    seconds = d.up("--build", "--scale", "jwt=3")
    figure(f"`up --build --scale jwt=3` on a fresh tree: healthy in {seconds:.0f} s")
    replicas = d.ids("jwt")
    need(len(replicas) == 3, f"3 replicas run ({len(replicas)})")
    secret = d.secret("login_client_secret")
    need(re.fullmatch(r"[A-Za-z0-9_-]{43}", secret) is not None, "the login client's secret was made, base64url")
    basic = "Basic " + base64.b64encode(f"web:{secret}".encode()).decode()
    status, _, doc = request(port, "POST", "/login", {"Authorization": basic}, {"user_id": "compose-test"})
    need(status == 200 and "access" in doc, f"/login through nginx with the made secret ({status})")
    status, _, _ = request(port, "GET", "/openapi.json")
    need(status == 200, f"/openapi.json is public through nginx ({status})")
    least_privilege(d)
    register = lambda email: request(port, "POST", "/register", {"Authorization": basic},
                                     {"email": email, "password": "correct horse battery"})[0]

    if want("load"):
        load_flow(port, basic)

    if want("kill"):
        # A replica killed under /authenticate traffic.
        access = request(port, "POST", "/login", {"Authorization": basic}, {"user_id": "kill"})[2].get("access")
        with Traffic(port, [("GET", "/authenticate", f"Bearer {access}", None, 200)]) as traffic:
            time.sleep(2)
            subprocess.run(["docker", "kill", replicas[0]], check=True, capture_output=True)
            time.sleep(8)
        traffic.verdict("a replica killed (docker kill) under /authenticate traffic")
        d.up("--scale", "jwt=3")

    if want("redis"):
        redis_restart(d, port, basic)
    if want("postgres"):
        postgres_restart(d, port, basic, register)
    if want("scale"):
        scale_under_traffic(d, port, basic)
    token = cli_token(d, port) if want("cli") else None
    if want("restart"):
        down_up(d, port, secret, token, register)
    if want("uds"):
        uds(d, port, basic)
    if want("secrets"):
        own_secrets(d, port, secret, basic)


def redis_restart(d: Deployment, port: int, basic: str) -> None:
    """Redis down and back: 503 while down, then the same replicas serve again."""
    before = d.started_at(d.ids("jwt"))
    d.compose("stop", "cache")
    login = lambda: request(port, "POST", "/login", {"Authorization": basic}, {"user_id": "redis"})[0]
    poll(lambda: login() == 503, "/login answers 503 while Redis is down", 30)
    d.compose("start", "cache")
    t0 = time.monotonic()
    if poll(lambda: login() == 200, "/login answers 200 again once Redis is back", 60):
        figure(f"Redis restarted: /login answered 200 again {time.monotonic() - t0:.1f} s after start")
    need(d.started_at(d.ids("jwt")) == before, "no replica restarted for Redis' restart")


def postgres_restart(d: Deployment, port: int, basic: str, register) -> None:
    """PostgreSQL down and back: registrations 503, sessions unaffected."""
    access = request(port, "POST", "/login", {"Authorization": basic}, {"user_id": "pg"})[2].get("access")
    d.compose("stop", "db")
    poll(lambda: register("down@example.com") == 503, "/register answers 503 while PostgreSQL is down", 30)
    status = request(port, "GET", "/authenticate", {"Authorization": f"Bearer {access}"})[0]
    need(status == 200, f"a session still authenticates while PostgreSQL is down ({status})")
    d.compose("start", "db")
    t0 = time.monotonic()
    if poll(lambda: register("back@example.com") == 201, "/register answers 201 once PostgreSQL is back", 90):
        figure(f"PostgreSQL restarted: /register answered 201 again {time.monotonic() - t0:.1f} s after start")


def scale_under_traffic(d: Deployment, port: int, basic: str) -> None:
    """Scaling under traffic: logins and authentications, 3 -> 5 -> 2."""
    # Its own user: the logins below (user "scale") may end that user's older sessions.
    access = request(port, "POST", "/login", {"Authorization": basic}, {"user_id": "scale-auth"})[2].get("access")
    steps = [("GET", "/authenticate", f"Bearer {access}", None, 200),
             ("POST", "/login", basic, {"user_id": "scale"}, 200)]
    with Traffic(port, steps) as traffic:
        time.sleep(1)
        up5 = d.up("--scale", "jwt=5")
        down2 = d.up("--scale", "jwt=2")
        time.sleep(3)
    figure(f"scaled 3 -> 5 in {up5:.0f} s and 5 -> 2 in {down2:.0f} s under traffic")
    traffic.verdict("--scale jwt=5 then jwt=2 under /authenticate and /login traffic")
    need(len(d.ids("jwt")) == 2, "2 replicas after scaling down")


def cli_token(d: Deployment, port: int) -> str | None:
    """The CLI in a replica's container: the API token it made, for `restart`."""
    out = d.compose("exec", "-T", "jwt", "tokengate", "token", "create", "compose-test",
                    "--scopes", "reports:read").stdout
    token = (re.search(r"tg_live_[A-Za-z0-9_-]+", out) or [None])[0]
    status, headers, _ = request(port, "GET", "/authenticate?scope=reports:read", {"Authorization": f"Bearer {token}"})
    need(token and status == 200 and headers.get("x-user-id") == "token:compose-test",
         f"`docker compose exec jwt tokengate token create` makes a token nginx lets through ({status})")
    return token


def down_up(d: Deployment, port: int, secret: str, token: str | None, register) -> None:
    """down + up: the volumes keep users, API tokens and secrets (the token if `cli` made one)."""
    need(register("kept@example.com") == 201, "a user registers before `down`")
    d.compose("down", timeout=300)
    seconds = d.up("--scale", "jwt=2")
    figure(f"`down` then `up` (image built): healthy in {seconds:.0f} s")
    need(d.secret("login_client_secret") == secret, "the secrets survive `down` + `up`")
    status = request(port, "POST", "/login", {}, {"email": "kept@example.com", "password": "correct horse battery"})[0]
    need(status == 200, f"a user registered before `down` logs in after `up` ({status})")
    if token:
        status = request(port, "GET", "/authenticate?scope=reports:read", {"Authorization": f"Bearer {token}"})[0]
        need(status == 200, f"the API token made before `down` still passes ({status})")


def uds(d: Deployment, port: int, basic: str) -> None:
    """One host, one replica on a Unix socket."""
    d.compose("down", timeout=300)
    seconds = d.up("--build", files=UDS)
    figure(f"compose.uds.yaml: healthy in {seconds:.0f} s")
    need(len(d.ids("jwt", files=UDS)) == 1, "compose.uds.yaml runs one replica")
    status, _, doc = request(port, "POST", "/login", {"Authorization": basic}, {"user_id": "uds"})
    need(status == 200, f"/login through nginx over the Unix socket ({status})")
    status = request(port, "GET", "/authenticate", {"Authorization": f"Bearer {doc.get('access')}"})[0]
    need(status == 200, f"/authenticate through nginx over the Unix socket ({status})")


def own_secrets(d: Deployment, port: int, secret: str, basic: str) -> None:
    """Operators' own files (a fresh database: PostgreSQL keeps the passwords of its first start)."""
    d.compose("down", "-v", files=UDS, timeout=300)
    subprocess.run([str(d.tree / "scripts" / "init-secrets")], check=True, capture_output=True)
    own = (d.tree / "secrets" / "login_client_secret").read_text()
    seconds = d.up("--scale", "jwt=1", files=OWN)
    figure(f"compose.secrets.yaml (fresh volumes): healthy in {seconds:.0f} s")
    own_basic = "Basic " + base64.b64encode(f"web:{own}".encode()).decode()
    ok = request(port, "POST", "/login", {"Authorization": own_basic}, {"user_id": "own"})[0]
    made = request(port, "POST", "/login", {"Authorization": basic}, {"user_id": "own"})[0]
    need(own != secret and ok == 200 and made == 401,
         f"compose.secrets.yaml: the replicas take scripts/init-secrets' files, not the volumes' ({ok}, {made})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep-tree", action="store_true", help="leave the copied tree (its path is printed)")
    p.add_argument("--only", default=os.environ.get("COMPOSE_TEST_ONLY", ""), metavar="CHECK,...",
                   help=f"after step 1, run only these checks (default: all; env COMPOSE_TEST_ONLY): {', '.join(CHECKS)}")
    o = p.parse_args()
    only = frozenset(filter(None, (c.strip() for c in o.only.split(","))))
    if only - set(CHECKS):
        p.error(f"--only: no check {', '.join(sorted(only - set(CHECKS)))}; the checks are {', '.join(CHECKS)}")
    os.environ["DOCKER_BUILDKIT"] = "0"  # BuildKit fetches the `# syntax=` frontend from a registry
    tree = Path(tempfile.mkdtemp(prefix="tokengate-compose-"))
    copy_tree(tree)
    port, grpc_port = free_port(), free_port()
    override = tree / "compose.test-ports.yaml"
    override.write_text("services:\n  nginx:\n    ports: !override\n"
                        f"      - \"127.0.0.1:{port}:4000\"\n      - \"127.0.0.1:{grpc_port}:9090\"\n")
    d = Deployment(tree, override)
    log(f"tree {tree}, nginx on 127.0.0.1:{port} (HTTP) and :{grpc_port} (gRPC), project {PROJECT}")
    started = time.monotonic()
    # What an interrupted earlier run left: compose.uds.yaml names every service and volume.
    d.compose("down", "-v", "--remove-orphans", files=UDS, check=False, quiet=True)
    try:
        scenario(d, port, only)
    except Exception as e:  # a broken step is a failed run, with its reason
        need(False, f"{type(e).__name__}: {e}")
        logs = d.compose("logs", "--tail", "30", "--no-color", files=UDS, check=False, quiet=True)
        print(logs.stdout[-6000:])
    finally:
        d.compose("down", "-v", "--remove-orphans", files=UDS, check=False, quiet=True, timeout=300)
        if not o.keep_tree:
            shutil.rmtree(tree, ignore_errors=True)
    print("\ncompose-test figures:")
    for line in figures:
        print(f"  {line}")
    log(f"{len(failures)} failed in {time.monotonic() - started:.0f} s" + "".join(f"\n  - {f}" for f in failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
