"""The users' cases (SPEC §7), argon2-bound: register (new emails),
password_login (users registered in a setup phase), and authenticate with the
database full of users (it never touches the database)."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from .clients import http_request
from .common import BenchError, log

if TYPE_CHECKING:
    from .harness import Bench

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


def register_user(port: int, email: str, conn=None):
    return http_request(port, "POST", "/register",
                        body={"email": email, "password": USER_PASSWORD}, conn=conn)


def make_users(b: Bench, port: int, count: int) -> Path:
    """The setup of password_login: registers `count` users with
    --argon2-connections clients at once; returns a file of their emails."""
    run = f"setup{int(time.time())}{os.getpid()}"
    emails = [f"{run}-{i}@bench.example" for i in range(count)]
    clients = max(1, min(b.o.argon2_connections, count))

    def register(chunk: list[str]) -> list[str]:
        conn, bad = None, []
        for email in chunk:
            try:
                status, body, conn = register_user(port, email, conn)
            except (OSError, http.client.HTTPException):
                # A kept-alive connection the server closed: once more, anew.
                status, body, conn = register_user(port, email)
            if status != 201:
                bad.append(f"{email}: {status} {body[:120]!r}")
        if conn:
            conn.close()
        return bad

    with ThreadPoolExecutor(clients) as pool:
        bad = [e for result in pool.map(register, [emails[i::clients] for i in range(clients)])
               for e in result]
    if bad:
        raise BenchError(f"setup: {len(bad)} of {count} registrations failed, e.g. {bad[0]}")
    path = b.work / "users"
    path.write_text("\n".join(emails) + "\n")
    return path


def database_query(b: Bench, sql: str) -> str | None:
    """One value from the cluster's database (SQLite: its file, read-only;
    PostgreSQL: psql with the cluster's password), or None if it cannot be read."""
    db = b.state.get("database") or {}
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


def argon2_params(b: Bench) -> dict:
    """The argon2 parameters in use, from a PHC string: one /register stored
    (read from the database), else one `tokengate hash-secret` makes."""
    phc = database_query(b, "SELECT password_hash FROM users LIMIT 1")
    source = "a password hash /register stored"
    if not phc:
        phc, source = b.hash_secret("bench-argon2-parameters"), "`tokengate hash-secret`"
    m = re.match(r"\$(argon2(?:id|i|d))\$v=(\d+)\$m=(\d+),t=(\d+),p=(\d+)\$", phc)
    if not m:
        raise BenchError(f"not an argon2 PHC string ({source}): {phc[:30]}...")
    return {"algorithm": m[1], "version": int(m[2]), "m_kib": int(m[3]), "t": int(m[4]),
            "p": int(m[5]), "source": source}


def database_transactions(b: Bench) -> int | None:
    """PostgreSQL's count of committed and rolled back transactions in the
    cluster's database (None on SQLite: no server to ask)."""
    value = database_query(
        b, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
    return int(value) if value and value.isdigit() else None


def run(b: Bench, want) -> None:
    """register, password_login and authenticate_with_users on a cluster of
    their own (one replica): argon2's memory stays out of the first cluster's
    RSS, and its rate out of every other case."""
    # Every registration here comes from 127.0.0.1: no per-address limit.
    b.start_cluster(1, "cluster-users",
                    "users:\n  registrations_per_address: 0\n")
    port = b.replica_port(0)
    direct = f"http://127.0.0.1:{port}"
    conns = b.o.argon2_connections

    # The contract, once, before any load: 201 {"user_id"}, 409 email_taken,
    # the /login token pair, 401 invalid_credentials (one failure of the
    # five users.max_failures allows this address).
    probe = f"probe{int(time.time())}{os.getpid()}@bench.example"
    status, body, conn = register_user(port, probe)
    conn.close()
    if status == 404:
        b.notes.append("register, password_login, authenticate_with_users: this binary has "
                       "no POST /register; skipped")
        b.stop_cluster()
        return

    def expect(what: str, status: int, body: bytes, want_status: int, check) -> None:
        try:
            ok = status == want_status and check(json.loads(body))
        except ValueError:
            ok = False
        if not ok:
            raise BenchError(f"{what}: answered {status} {body[:200]!r}, want {want_status}")

    expect("POST /register", status, body, 201, lambda d: "user_id" in d)
    status, body, conn = register_user(port, probe)
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
    b.argon2 = argon2_params(b)
    a = b.argon2
    log(f"argon2: {a['algorithm']} v={a['version']} m={a['m_kib']} KiB, t={a['t']}, p={a['p']} "
        f"(from {a['source']})")

    if want("register"):
        b.measure("register", f"{direct}/register", "register.lua", args=(USER_PASSWORD,),
                  redis_ops=True, connections=conns)
    if want("password_login"):
        started = time.monotonic()
        users = make_users(b, port, b.o.users)
        b.database_use["setup_users"] = b.o.users
        b.database_use["setup_s"] = round(time.monotonic() - started, 1)
        log(f"setup: {b.o.users} users registered in {b.database_use['setup_s']} s")
        b.measure("password_login", f"{direct}/login", "password_login.lua",
                  args=(users, b.o.threads, USER_PASSWORD), redis_ops=True,
                  connections=conns)
    if want("authenticate_with_users"):
        token = b.login(port)["access"]

        def check():
            status, body, conn = http_request(port, "GET", "/authenticate",
                                              {"Authorization": f"Bearer {token}"})
            conn.close()
            if status != 200:
                raise BenchError(f"GET /authenticate answered {status}: {body[:200]!r}")

        before = database_transactions(b)
        row = b.measure("authenticate_with_users", f"{direct}/authenticate", "get.lua",
                        [f"Authorization: Bearer {token}"], redis_ops=True, check=check)
        after = database_transactions(b)
        users = database_query(b, "SELECT count(*) FROM users")
        b.database_use["users_in_database"] = int(users) if users and users.isdigit() else None
        # Minus the transaction of the first query itself.
        b.database_use["transactions_during_authenticate"] = (
            after - before - 1 if before is not None and after is not None else None)
        b.database_use["authenticate_requests"] = row["requests"]
    for k, v in b.peak_rss().items():
        b.rss[f"users-{k}"] = v
    b.stop_cluster()
    for name in USER_CASES:
        b.note_noise(only=name)
