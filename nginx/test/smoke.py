#!/usr/bin/env python3
"""Run the nginx/ configuration for real, against stand-ins, on loopback only.

    nginx/test/smoke.py --nginx PATH --mode compose   # nginx/nginx.conf, needs nginx >= 1.27.3
    nginx/test/smoke.py --nginx PATH --mode native    # the shared files in a native config
    nginx/test/smoke.py --nginx PATH --mode compose-uds --tokengate BIN   # compose.uds.yaml's nginx

Nothing here needs tokengate or Docker: each replica is a stand-in that answers
/authenticate the way SPEC.md §2, §6 and §9 say (`Bearer good` -> 200 + X-User-Id and
the configured identity headers X-Auth-Request-User / Remote-User, `Bearer email` the
same with X-Auth-Request-Email / Remote-Email (a password login's session), no
header -> 401 realm only, `Bearer narrow` -> 403 insufficient_scope, `Bearer outage`
-> 503 as when Redis is down, an API token `Bearer tg_live_reports` -> 200 +
X-User-Id token:reporting + X-Token-Id and no X-Session-Id, any other token (a revoked
API token among them) -> 401 invalid_token; held scopes are checked against
`?scope=`), checks a login
client's HTTP Basic credentials on /login as compose's `web` client is checked
(right -> 200, wrong -> 401 invalid_client + WWW-Authenticate: Basic, none -> 200 as
an open /login), answers every request's X-Request-Id back as tokengate does, and
records what nginx sent it. The replicas listen on 127.0.0.2 and 127.0.0.3, one port,
the way compose replicas share port 8080 on different addresses.

compose mode runs nginx/nginx.conf itself, with only its addresses rewritten (each
rewrite must match, so the file cannot drift away from this test): Docker's DNS
becomes a stub DNS server here whose answer for `jwt` the test changes, which shows
that nginx keeps finding replicas as they are scaled up and down.
native mode writes a config like a loopback cluster would (static upstream with two
replicas, a Python app upstream that reports the exact headers it got) and includes
the shared files by absolute path.

compose-uds mode runs nginx/nginx.conf as compose.uds.yaml does, with
tokengate.upstream.uds.conf as tokengate.upstream.conf, in front of a real tokengate
replica (--tokengate) on a Unix socket: the replica runs with the group of nginx's
workers (as compose.uds.yaml runs it with nginx's gid), and a client logs in, reaches
the demo app, logs out and is refused, every API request over the socket.

With --tokengate and --grpc-probe (scripts/check-deploy passes both), the gRPC server
(tokengate.grpc.conf) is run too, in front of a real tokengate replica (in-memory
store, a SQLite file here, gRPC on 127.0.0.2, trusting 127.0.0.1 as its proxy):
examples/grpc_probe.rs calls it through nginx with tonic's generated client
(Register, Login, Refresh, Logout, an unknown method, a spoofed x-forwarded-for),
then again with no replica left (UNAVAILABLE). A stand-in would need an HTTP/2
server, which Python's standard library does not have.

Prints one line per check and ends with "N passed, N failed"; exits 1 on any failure.
"""

import argparse
import base64
import grp
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

NGINX_DIR = Path(__file__).resolve().parent.parent
USER_ID = "42"
SESSION_ID = "5b0c6c1e-6a4f-4d43-9a43-3f1f2b8f0c11"
# An API token (SPEC §9) as tokengate answers for it: no session, a token id.
TOKEN_ID = "01936f0e-7a8b-7c3d-9e4f-a1b2c3d4e5f6"
API_TOKEN = "Bearer tg_live_reports"
REVOKED_API_TOKEN = "Bearer tg_live_revoked"
REALM = 'Bearer realm="tokengate"'
INSUFFICIENT = 'Bearer error="insufficient_scope", scope="admin"'
# What the public API location must pass through (SPEC §2, §6).
API_POSTS = ("/login", "/register", "/refresh", "/logout", "/token", "/oauth/token", "/oauth/introspect",
             "/oauth/revoke", "/oauth/verify", "/auth/validate")
# A request carrying this header is read, then its connection dropped without an
# answer: a replica that died holding it.
DROP = "X-Smoke-Drop"
API_GETS = ("/ping", "/health", "/.well-known/jwks.json", "/.well-known/oauth-authorization-server",
            "/openapi.json")
# The login client of the compose deployment (config.compose.yml), as the stand-in knows it.
LOGIN_CLIENT = ("web", "s3cr3t-from-secrets_login_client_secret")
BASIC_CHALLENGE = 'Basic realm="tokengate", charset="UTF-8"'
# What tokengate answers for each accepted stand-in token: its identity headers
# (X-Scope: the scopes it holds, for the scope-at-the-gate checks).
# With authenticate.identity_headers configured, tokengate also answers the
# conventional names: the user always, the email for a password login's session.
SESSION = {"X-User-Id": USER_ID, "X-Session-Id": SESSION_ID,
           "X-Auth-Request-User": USER_ID, "Remote-User": USER_ID}
EMAIL = "ada@example.com"
ACCEPTED = {
    "Bearer good": {**SESSION, "X-Scope": "read"},
    "Bearer admin": {**SESSION, "X-Scope": "admin read"},
    "Bearer email": {**SESSION, "X-Scope": "read", "X-Auth-Request-Email": EMAIL, "Remote-Email": EMAIL},
    API_TOKEN: {"X-User-Id": "token:reporting", "X-Token-Id": TOKEN_ID, "X-Scope": "reports:read",
                "X-Auth-Request-User": "token:reporting", "Remote-User": "token:reporting"},
}
# What the protected app must then see of each (None: the header is absent). Never
# the client's Authorization: identity, not credentials (SPEC §11; a location opts in
# to pass it on with $tokengate_app_authorization, see native mode's /legacy/).
IDENTITY_HEADERS = ("X-User-Id", "X-Session-Id", "X-Token-Id", "X-Scope", "X-Auth-Request-User",
                    "X-Auth-Request-Email", "Remote-User", "Remote-Email", "Authorization")
# Whatever a client claims in those headers: replaced or dropped, never passed on.
SPOOFED_IDENTITY = {"X-User-Id": "admin", "X-Session-Id": "evil", "X-Token-Id": "forged", "X-Scope": "admin",
                    "X-Auth-Request-User": "admin", "X-Auth-Request-Email": "boss@example.com",
                    "Remote-User": "admin", "Remote-Email": "boss@example.com"}
# nginx's $request_id.
REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def seen_by_app(auth):
    return {name: ACCEPTED[auth].get(name) for name in IDENTITY_HEADERS}
ARRIVAL = itertools.count()  # orders requests across replicas


# --- stand-ins --------------------------------------------------------------------


class TrackingServer(ThreadingHTTPServer):
    """An HTTP/1.1 keep-alive server that counts and can sever its connections."""

    daemon_threads = True

    def __init__(self, addr, handler, name):
        self.name = name
        self.accepted = 0
        self.open = set()
        self.auth_log = []  # what nginx sent to /authenticate
        self.dropped = []  # paths of the requests dropped unanswered (DROP)
        self.lock = threading.Lock()
        super().__init__(addr, handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def kill(self):
        """Die like a stopped container: no listener, every connection reset."""
        self.shutdown()
        self.server_close()
        with self.lock:
            for conn in list(self.open):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.accepted += 1
            self.server.open.add(self.connection)

    def finish(self):
        with self.server.lock:
            self.server.open.discard(self.connection)
        super().finish()

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Replica", self.server.name)
        # As tokengate (and a well-behaved app) does: the request's id back.
        self.send_header("X-Request-Id", self.headers.get("X-Request-Id") or uuid.uuid4().hex)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self):
        raise NotImplementedError

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = (
        lambda self: self.handle_any()
    )


class TokengateStandIn(Handler):
    def handle_any(self):
        body = self.body()
        path = self.path.split("?")[0]
        if self.headers.get(DROP):
            with self.server.lock:
                self.server.dropped.append(path)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if path == "/authenticate":
            with self.server.lock:
                self.server.auth_log.append(
                    {
                        "seq": next(ARRIVAL),
                        "method": self.command,
                        "path": self.path,
                        "headers": self.headers.items(),
                        "body": body,
                    }
                )
            auth = self.headers.get("Authorization")
            if auth is None:
                return self.answer(401, {"error": "invalid_request"}, [("WWW-Authenticate", REALM)])
            if auth in ACCEPTED:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                required = " ".join(query.get("scope", [])).split()
                held = ACCEPTED[auth]["X-Scope"].split()
                if any(scope not in held for scope in required):
                    challenge = f'Bearer error="insufficient_scope", scope="{" ".join(required)}"'
                    return self.answer(403, {"error": "insufficient_scope"}, [("WWW-Authenticate", challenge)])
                claims = {"sub": ACCEPTED[auth]["X-User-Id"], "sid": ACCEPTED[auth].get("X-Session-Id")}
                return self.answer(200, claims, list(ACCEPTED[auth].items()))
            if auth == "Bearer outage":
                return self.answer(503, {"error": "temporarily_unavailable"})
            if auth == "Bearer narrow":
                return self.answer(403, {"error": "insufficient_scope"}, [("WWW-Authenticate", INSUFFICIENT)])
            return self.answer(
                401,
                {"error": "invalid_token"},
                [("WWW-Authenticate", REALM + ', error="invalid_token"')],
            )
        if path == "/ping" and self.command == "GET":
            return self.answer(200, b"pong")
        if path == "/health" and self.command == "GET":
            return self.answer(200, {"status": "ok", "store": "ok"})
        if path == "/login" and self.command == "POST" and "Authorization" in self.headers:
            want = "Basic " + base64.b64encode(":".join(LOGIN_CLIENT).encode()).decode()
            if self.headers["Authorization"] != want:
                return self.answer(401, {"error": "invalid_client", "error_description": "bad client"},
                                   [("WWW-Authenticate", BASIC_CHALLENGE)])
            return self.answer(200, {"endpoint": path, "client": LOGIN_CLIENT[0]})
        if path in API_POSTS and self.command == "POST":
            return self.answer(200, {"endpoint": path, "replica": self.server.name,
                                     "forwarded_for": self.headers.get_all("X-Forwarded-For")})
        if path in API_GETS and self.command == "GET":
            host = self.headers.get("X-Forwarded-Host")
            return self.answer(200, {"endpoint": path, "forwarded_host": host})
        return self.answer(404, {"error": "not_found"})


class AppStandIn(Handler):
    """The protected app of native mode: reports every header line it received."""

    def handle_any(self):
        self.body()
        self.answer(200, {"headers": self.headers.items()})


class DnsStub(socketserver.BaseRequestHandler):
    """Answers A queries for `jwt` with the server's current address list."""

    def handle(self):
        query, sock = self.request
        ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
        pos, labels = 12, []
        while query[pos]:
            labels.append(query[pos + 1 : pos + 1 + query[pos]].decode().lower())
            pos += 1 + query[pos]
        qtype = struct.unpack("!H", query[pos + 1 : pos + 3])[0]
        question = query[12 : pos + 5]
        known = ".".join(labels) == "jwt"
        answers = list(self.server.addresses) if known and qtype == 1 else []
        flags = 0x8180 if known else 0x8183  # response, RD+RA; NXDOMAIN if unknown
        out = struct.pack("!HHHHHH", ident, flags, qdcount, len(answers), 0, 0) + question
        for address in answers:
            out += struct.pack("!HHHLH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(address)
        sock.sendto(out, self.client_address)


def start_dns():
    server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), DnsStub)
    server.daemon_threads = True
    server.addresses = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- nginx --------------------------------------------------------------------------


class Nginx:
    def __init__(self, binary, workdir, conf):
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [binary, "-p", f"{workdir}/", "-c", str(conf), "-g", f"daemon off; pid {workdir}/nginx.pid;"],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "stderr.log", "wb"),
        )

    def stop(self, show_log):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if show_log:
            for name in ("stderr.log", "error.log"):
                path = self.workdir / name
                if path.exists():
                    print(f"--- nginx {name} (last lines)")
                    print("\n".join(path.read_text(errors="replace").splitlines()[-15:]))


def request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def header_values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def wait_until(what, predicate, seconds=8.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


# --- gRPC: a real replica and the probe -------------------------------------------

# throttle.max_failures_per_address of the gRPC replica: the probe's
# spoofed-address check needs this many failed logins (each for another
# account), and one more.
GRPC_THROTTLE = 3


class GrpcReplica:
    """A real tokengate replica with gRPC on 127.0.0.2 (compose: what `jwt` resolves to)."""

    def __init__(self, binary, workdir):
        self.dir = workdir / "replica"
        self.dir.mkdir()
        self.http_port, self.port = free_port(), free_port()
        (self.dir / "config.yml").write_text(f"""
server: {{host: 127.0.0.2, port: {self.http_port}, trusted_proxies: [127.0.0.1]}}
throttle: {{max_failures_per_address: {GRPC_THROTTLE}}}
grpc: {{port: {self.port}}}
admin: {{listen: ""}}
logging: {{level: warn}}
database: {{url: "sqlite://{self.dir}/tokengate.db?mode=rwc"}}
""")
        self.log = open(self.dir / "replica.log", "wb")
        self.proc = subprocess.Popen([binary, "--config", str(self.dir / "config.yml")], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def wait_ready(self):
        def up():
            expect(self.proc.poll() is None, f"tokengate exited: {self.tail()}")
            with socket.create_connection(("127.0.0.2", self.port), timeout=1):
                return True
        wait_until("the gRPC replica to listen", up, 30)

    def tail(self):
        return (self.dir / "replica.log").read_text(errors="replace")[-2000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def grpc_probe(probe, port, *args):
    """Runs examples/grpc_probe.rs against nginx's gRPC port; raises with its output on failure."""
    run = subprocess.run([probe, "--url", f"http://127.0.0.1:{port}", *args],
                         capture_output=True, text=True, timeout=120)
    out = (run.stdout + run.stderr).strip()
    expect(run.returncode == 0, "\n" + out)
    print("\n".join("     " + line for line in out.splitlines()))


def grpc_checks(r, grpc, replica, port):
    if grpc is None:
        print("skip gRPC (no --tokengate / --grpc-probe)")
        return
    r.check("gRPC through nginx: AuthApi, health, UNIMPLEMENTED, x-forwarded-for replaced",
            lambda: grpc_probe(grpc["probe"], port, "--throttle", str(GRPC_THROTTLE)))
    replica.stop()
    r.check("gRPC, no replica: UNAVAILABLE from nginx", lambda: grpc_probe(grpc["probe"], port, "--unavailable"))


# --- checks -------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, fn):
        try:
            fn()
        except Exception as exc:  # a failed check must not stop the others
            self.failed += 1
            print(f"FAIL {name}: {exc}")
        else:
            self.passed += 1
            print(f"ok   {name}")


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def expect_json_error(status, headers, body, want_status, want_error):
    expect(status == want_status, f"status {status}, want {want_status}: {body[:200]!r}")
    ctype = header_values(headers, "Content-Type")
    expect(ctype and ctype[0].startswith("application/json"), f"Content-Type {ctype}")
    doc = json.loads(body)
    expect(doc.get("error") == want_error and doc.get("error_description"), f"body {doc}")


def common_checks(r, port, replicas, app_check, work, app_request_id):
    """What every deployment must do, whatever finds the replicas. `app_request_id(doc,
    headers)` is the X-Request-Id the protected app received."""

    def ping():
        status, headers, body = request(port, "GET", "/ping")
        expect((status, body) == (200, b"pong"), f"{status} {body!r}")
        expect(header_values(headers, "X-Replica"), "not answered by a replica")

    def api_posts():
        for path in API_POSTS:
            status, _, body = request(port, "POST", path, {"Content-Type": "application/json"}, b"{}")
            expect(status == 200 and json.loads(body)["endpoint"] == path, f"{path}: {status} {body!r}")
        for path in API_GETS[2:]:
            status, _, body = request(port, "GET", path, {"Host": "auth.example.com:4000"})
            doc = json.loads(body)
            expect(status == 200 and doc["endpoint"] == path, f"{path}: {status} {body!r}")
            expect(doc["forwarded_host"] == "auth.example.com:4000", f"{path}: forwarded {doc}")
        status, _, body = request(port, "GET", "/health")
        expect(status == 200 and json.loads(body)["store"] == "ok", f"/health: {status} {body!r}")

    def login_client():
        json_type = {"Content-Type": "application/json"}
        good = "Basic " + base64.b64encode(":".join(LOGIN_CLIENT).encode()).decode()
        status, _, body = request(port, "POST", "/login", {**json_type, "Authorization": good}, b'{"user_id": 42}')
        expect(status == 200 and json.loads(body).get("client") == "web", f"right secret: {status} {body!r}")
        bad = "Basic " + base64.b64encode(b"web:wrong").decode()
        status, headers, body = request(port, "POST", "/login", {**json_type, "Authorization": bad}, b'{"user_id": 42}')
        # tokengate's own 401, untouched: its JSON error and its Basic challenge.
        expect_json_error(status, headers, body, 401, "invalid_client")
        expect(header_values(headers, "WWW-Authenticate") == [BASIC_CHALLENGE],
               f"WWW-Authenticate {header_values(headers, 'WWW-Authenticate')}")

    def forwarded_for():
        # tokengate throttles failed client authentications per address, believing
        # nginx's X-Forwarded-For: it must carry exactly the address nginx saw.
        for sent in ({}, {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}):
            status, _, body = request(port, "POST", "/oauth/token", sent, b"grant_type=client_credentials")
            got = json.loads(body).get("forwarded_for")
            expect(status == 200 and got == ["127.0.0.1"], f"client sent {sent}: replica got {got}")

    def not_exposed():
        for path in ("/metrics", "/authenticate/x", "/_tokengate/x", "/login/x", "/oauth/tokens", "/nope", "/auth",
                     "/auth/validate/x", "/admin/tokens", f"/admin/tokens/{TOKEN_ID}"):
            status, headers, body = request(port, "GET", path)
            expect_json_error(status, headers, body, 404, "not_found")
            expect(not header_values(headers, "X-Replica"), f"GET {path} reached a replica")
        # The admin API, whatever the method and even with a token: nginx's 404,
        # never a replica's answer (operators use a replica's port or the CLI).
        admin = {"Authorization": "Bearer an-admin-token", "Content-Type": "application/json"}
        for path in ("/admin/tokens", f"/admin/tokens/{TOKEN_ID}/revoke"):
            status, headers, body = request(port, "POST", path, admin, b'{"name": "x", "scopes": []}')
            expect_json_error(status, headers, body, 404, "not_found")
            expect(not header_values(headers, "X-Replica"), f"POST {path} reached a replica")
        status, _, _ = request(port, "GET", "/_tokengate/authenticate", {"Authorization": "Bearer good"})
        expect(status == 404, f"internal location answered {status}")

    def public_authenticate():
        # As the clients of the service tokengate replaces call it: GET on the public port.
        before = sum(len(x.auth_log) for x in replicas)
        status, headers, body = request(port, "GET", "/authenticate", {"Authorization": "Bearer good"})
        expect(status == 200, f"GET: {status} {body[:200]!r}")
        expect(json.loads(body) == {"sub": USER_ID, "sid": SESSION_ID}, f"claims {body[:200]!r}")
        expect(header_values(headers, "X-User-Id") == [USER_ID], f"X-User-Id {header_values(headers, 'X-User-Id')}")
        expect(header_values(headers, "X-Replica"), "not answered by a replica")
        sent = last_check()
        expect(sent["method"] == "GET" and sent["path"] == "/authenticate",
               f"replica got {sent['method']} {sent['path']}")
        for method in ("HEAD", "POST"):
            status, _, body = request(port, method, "/authenticate", {"Authorization": "Bearer good"})
            expect(status == 200, f"{method}: {status} {body[:200]!r}")
        expect(sum(len(x.auth_log) for x in replicas) == before + 3, "not one replica call per request")
        # tokengate's own refusals, untouched (nginx's JSON pages are for protected locations).
        status, headers, body = request(port, "GET", "/authenticate")
        expect(status == 401 and json.loads(body)["error"] == "invalid_request", f"no token: {status} {body[:200]!r}")
        expect(header_values(headers, "WWW-Authenticate") == [REALM], f"{header_values(headers, 'WWW-Authenticate')}")
        status, headers, body = request(port, "GET", "/authenticate", {"Authorization": "Bearer forged"})
        expect(status == 401, f"bad token: {status} {body[:200]!r}")
        want = [REALM + ', error="invalid_token"']
        expect(header_values(headers, "WWW-Authenticate") == want, f"{header_values(headers, 'WWW-Authenticate')}")
        # Scopes are asked for in the query, as at the gate.
        status, _, _ = request(port, "GET", "/authenticate?scope=admin", {"Authorization": "Bearer good"})
        expect(status == 403, f"?scope=admin with a read token: {status}")
        expect(last_check()["path"] == "/authenticate?scope=admin", f"replica got {last_check()['path']}")

    def request_ids():
        def one_id(headers, what):
            ids = header_values(headers, "X-Request-Id")
            expect(len(ids) == 1 and REQUEST_ID.fullmatch(ids[0]), f"{what}: X-Request-Id {ids}")
            return ids[0]

        # The API: tokengate answers back the id it got, which is nginx's, not the client's.
        mine = {"X-Request-Id": "chosen-by-the-client"}
        _, headers, _ = request(port, "GET", "/ping", mine)
        ping_id = one_id(headers, "GET /ping")
        _, headers, _ = request(port, "GET", "/ping")
        expect(one_id(headers, "second GET /ping") != ping_id, "the same id for two requests")
        # A protected request: the check and the app got the same id, and the client too.
        status, headers, body = request(port, "GET", "/app/rid", {"Authorization": "Bearer good", **mine})
        expect(status == 200, f"/app/rid: {status} {body[:200]!r}")
        check_id = {k.lower(): v for k, v in last_check()["headers"]}.get("x-request-id")
        expect(check_id and REQUEST_ID.fullmatch(check_id), f"the auth check got X-Request-Id {check_id}")
        app_id = app_request_id(json.loads(body), headers)
        expect(app_id == check_id, f"the app got {app_id}, the check {check_id}")
        expect(one_id(headers, "/app/rid") == check_id, "the client was answered another id")
        # nginx's own answers carry it too: a refused check.
        status, headers, _ = request(port, "GET", "/app/rid", {"Authorization": "Bearer forged", **mine})
        expect(status == 401, f"refused: {status}")
        refused_id = one_id(headers, "nginx's JSON 401")
        # ... and nginx logged each of them under that id.
        wait_until("the ids in nginx's access log", lambda: all(
            i in (work / "access.log").read_text() for i in (ping_id, check_id, refused_id)), 5)
        expect("chosen-by-the-client" not in (work / "access.log").read_text(), "the client's id was logged")

    def authorized():
        # A session's check answers no X-Token-Id and (no password login) no email: the
        # client's own are dropped, not passed on; the rest replaced.
        before = sum(len(x.auth_log) for x in replicas)
        for auth in ("Bearer good", "Bearer email"):
            status, headers, body = request(port, "GET", "/app/orders?id=7",
                                            {"Authorization": auth, **SPOOFED_IDENTITY})
            expect(status == 200, f"{auth}: status {status}: {body[:200]!r}")
            app_check(json.loads(body), auth)
        expect(sum(len(x.auth_log) for x in replicas) == before + 2, "not exactly one check per request")

    def subrequest_shape():
        status, _, body = request(
            port, "POST", "/app/upload?x=1",
            {"Authorization": "Bearer good", "Content-Type": "application/json"}, b'{"big": "body"}',
        )
        expect(status == 200, f"status {status}: {body[:200]!r}")
        sent = max((e for x in replicas for e in x.auth_log), key=lambda e: e["seq"])
        got = {k.lower(): v for k, v in sent["headers"]}
        expect(sent["method"] == "HEAD", f"method {sent['method']}, want HEAD (keeps the connection reusable)")
        expect(sent["body"] == b"" and got.get("content-length") in (None, "0"), "request body reached /authenticate")
        expect(got.get("x-original-uri") == "/app/upload?x=1", f"X-Original-URI {got.get('x-original-uri')}")
        expect(got.get("x-original-method") == "POST", f"X-Original-Method {got.get('x-original-method')}")
        expect(got.get("authorization") == "Bearer good", "Authorization not forwarded")

    def missing_token():
        status, headers, body = request(port, "GET", "/app/x")
        expect_json_error(status, headers, body, 401, "unauthorized")
        expect(header_values(headers, "WWW-Authenticate") == [REALM], f"{header_values(headers, 'WWW-Authenticate')}")

    def invalid_token():
        status, headers, body = request(port, "GET", "/app/x", {"Authorization": "Bearer forged"})
        expect_json_error(status, headers, body, 401, "unauthorized")
        want = [REALM + ', error="invalid_token"']
        expect(header_values(headers, "WWW-Authenticate") == want, f"{header_values(headers, 'WWW-Authenticate')}")

    def forbidden():
        status, headers, body = request(port, "GET", "/app/x", {"Authorization": "Bearer narrow"})
        expect_json_error(status, headers, body, 403, "forbidden")
        expect(header_values(headers, "WWW-Authenticate") == [INSUFFICIENT], f"{header_values(headers, 'WWW-Authenticate')}")

    def last_check():
        return max((e for x in replicas for e in x.auth_log), key=lambda e: e["seq"])

    def scoped():
        status, _, body = request(port, "GET", "/app/orders", {"Authorization": "Bearer good"})
        expect(status == 200, f"unscoped location: {status} {body[:200]!r}")
        expect(last_check()["path"] == "/authenticate?scope=", f"unscoped check sent {last_check()['path']}")
        status, headers, body = request(port, "GET", "/app/admin/users", {"Authorization": "Bearer good"})
        expect_json_error(status, headers, body, 403, "forbidden")
        expect(last_check()["path"] == "/authenticate?scope=admin", f"scoped check sent {last_check()['path']}")
        want = ['Bearer error="insufficient_scope", scope="admin"']
        expect(header_values(headers, "WWW-Authenticate") == want, f"{header_values(headers, 'WWW-Authenticate')}")
        status, _, body = request(port, "GET", "/app/admin/users", {"Authorization": "Bearer admin"})
        expect(status == 200, f"admin token: {status} {body[:200]!r}")
        app_check(json.loads(body), "Bearer admin")

    def api_token():
        # A service's API token where its scope is required (nginx.conf's /reports/):
        # the app sees token:<name> and the token's id, and no session; whatever
        # identity the client claims is replaced or dropped.
        spoof = {"Authorization": API_TOKEN, **SPOOFED_IDENTITY}
        status, _, body = request(port, "GET", "/reports/daily?day=1", spoof)
        expect(status == 200, f"API token: {status} {body[:200]!r}")
        expect(last_check()["path"] == "/authenticate?scope=reports:read",
               f"/reports/ check sent {last_check()['path']}")
        app_check(json.loads(body), API_TOKEN)
        # A token without the scope: JSON 403 with tokengate's challenge.
        status, headers, body = request(port, "GET", "/reports/daily", {"Authorization": "Bearer good"})
        expect_json_error(status, headers, body, 403, "forbidden")
        want = ['Bearer error="insufficient_scope", scope="reports:read"']
        expect(header_values(headers, "WWW-Authenticate") == want, f"{header_values(headers, 'WWW-Authenticate')}")
        # A revoked token: JSON 401, error="invalid_token".
        status, headers, body = request(port, "GET", "/reports/daily", {"Authorization": REVOKED_API_TOKEN})
        expect_json_error(status, headers, body, 401, "unauthorized")
        want = [REALM + ', error="invalid_token"']
        expect(header_values(headers, "WWW-Authenticate") == want, f"{header_values(headers, 'WWW-Authenticate')}")

    def store_down():
        status, headers, body = request(port, "DELETE", "/app/x", {"Authorization": "Bearer outage"})
        expect_json_error(status, headers, body, 503, "temporarily_unavailable")
        expect(header_values(headers, "Retry-After"), "no Retry-After")

    def keepalive():
        before = sum(x.accepted for x in replicas)
        for _ in range(30):
            request(port, "GET", "/ping")
            request(port, "GET", "/app/k", {"Authorization": "Bearer good"})
        opened = sum(x.accepted for x in replicas) - before
        expect(opened <= 8, f"{opened} new upstream connections for 60 requests")

    r.check("GET /ping is proxied to a replica", ping)
    r.check("the public API (login, refresh, logout, health, OAuth, /auth/validate, discovery) is proxied",
            api_posts)
    r.check("login client: Basic credentials reach tokengate, its 401 + WWW-Authenticate: Basic reach the client",
            login_client)
    r.check("X-Forwarded-For is nginx's view of the client only; a client-sent one is dropped", forwarded_for)
    r.check("/metrics, the admin API and the internal auth location are not reachable (404)",
            not_exposed)
    r.check("/authenticate is public: a token's holder gets its claims (any method), 401 without",
            public_authenticate)
    r.check("request ids: nginx's one id reaches tokengate, the app and nginx's log, and the client; "
            "a client's own is replaced", request_ids)
    r.check("valid token: app reached once, identity (X-User-Id..., Remote-User...) from tokengate, "
            "spoofed headers replaced or dropped", authorized)
    r.check("auth subrequest: HEAD, no body, X-Original-URI/-Method, Authorization", subrequest_shape)
    r.check("no token: JSON 401 with WWW-Authenticate realm only", missing_token)
    r.check("bad token: JSON 401 with tokengate's error=\"invalid_token\"", invalid_token)
    r.check("tokengate 403: JSON 403 with tokengate's WWW-Authenticate", forbidden)
    r.check("scopes at the gate: $tokengate_scope is required, X-Scope reaches the app", scoped)
    r.check("API token at /reports/: token:<name> + X-Token-Id reach the app, spoofs replaced; "
            "no scope 403, revoked 401", api_token)
    r.check("tokengate 503 (Redis down): JSON 503, app not reached", store_down)
    r.check("upstream connections are kept alive", keepalive)


def spread(port, n=20):
    seen = set()
    for _ in range(n):
        status, headers, body = request(port, "POST", "/login", {"Content-Type": "application/json"}, b"{}")
        expect(status == 200, f"POST /login: {status} {body[:200]!r}")
        seen.update(header_values(headers, "X-Replica"))
    return seen


def all_down_checks(r, port):
    def api():
        status, headers, body = request(port, "POST", "/login", {"Content-Type": "application/json"}, b"{}")
        expect_json_error(status, headers, body, 503, "temporarily_unavailable")

    def gate():
        status, headers, body = request(port, "GET", "/app/x", {"Authorization": "Bearer good"})
        expect_json_error(status, headers, body, 503, "temporarily_unavailable")

    r.check("no replica reachable: API answers JSON 503", api)
    r.check("no replica reachable: protected app answers JSON 503 (fail closed)", gate)


# --- modes --------------------------------------------------------------------------


def rewrite(text, old, new, count):
    """Replace `old` in the directives (not the comments) of text, exactly count times
    (a file of nginx/: nginx.conf or tokengate.upstream.conf)."""
    lines = text.splitlines(keepends=True)
    found = sum(line.count(old) for line in lines if not line.lstrip().startswith("#"))
    if found != count:
        raise SystemExit(f"nginx/ changed: expected {count}x {old!r}, found {found} (update nginx/test/smoke.py)")
    return "".join(line if line.lstrip().startswith("#") else line.replace(old, new) for line in lines)


def start_grpc_replica(grpc, work):
    if grpc is None:
        return None
    replica = GrpcReplica(grpc["tokengate"], work)
    try:
        replica.wait_ready()
    except BaseException:
        replica.stop()
        raise
    return replica


def compose_mode(r, binary, work, grpc):
    a = TrackingServer(("127.0.0.2", 0), TokengateStandIn, "a")
    port = a.server_address[1]
    b = TrackingServer(("127.0.0.3", port), TokengateStandIn, "b")
    dns = start_dns()
    dns.addresses = ["127.0.0.2"]
    front, app_port, grpc_front = free_port(), free_port(), free_port()
    replica = start_grpc_replica(grpc, work)
    # Without a replica, the gRPC upstream names a port nothing listens on.
    grpc_port = replica.port if replica else free_port()

    for name in ("tokengate.locations.conf", "tokengate.protect.conf", "tokengate.grpc.conf"):
        shutil.copy(NGINX_DIR / name, work / name)
    upstream = (NGINX_DIR / "tokengate.upstream.conf").read_text()
    upstream = rewrite(upstream, "server jwt:8080 resolve", f"server jwt:{port} resolve", 1)
    (work / "tokengate.upstream.conf").write_text(upstream)
    text = (NGINX_DIR / "nginx.conf").read_text()
    text = rewrite(text, "include tokengate.upstream.conf;", "include tokengate.upstream.conf;", 1)
    text = rewrite(text, "listen 4000;", f"listen 127.0.0.1:{front};", 1)
    text = rewrite(text, "resolver 127.0.0.11 valid=5s", f"resolver 127.0.0.1:{dns.server_address[1]} valid=1s", 1)
    text = rewrite(text, "listen 9090;", f"listen 127.0.0.1:{grpc_front};", 1)
    text = rewrite(text, "server jwt:9090 resolve", f"server jwt:{grpc_port} resolve", 1)
    text = rewrite(text, "127.0.0.1:8081", f"127.0.0.1:{app_port}", 2)
    text = rewrite(text, "access_log /dev/stdout", f"access_log {work}/access.log", 1)
    text = rewrite(text, "error_log stderr warn;", f"error_log {work}/error.log warn;", 1)
    (work / "nginx.conf").write_text(text)

    nginx = Nginx(binary, work, work / "nginx.conf")
    try:
        wait_until("nginx to resolve jwt and answer /ping", lambda: request(front, "GET", "/ping")[0] == 200)

        def demo_app(doc, auth):
            # The demo app echoes the identity only ("" for an absent header); X-Scope
            # is checked in native mode.
            want = seen_by_app(auth)
            expect(doc == {"app": "demo", "user_id": want["X-User-Id"], "session_id": want["X-Session-Id"] or "",
                           "token_id": want["X-Token-Id"] or ""}, f"app saw {doc}")

        common_checks(r, front, [a, b], demo_app, work,
                      lambda doc, headers: (header_values(headers, "X-Request-Id") or [None])[0])

        def not_found_id():
            status, headers, _ = request(front, "GET", "/nope", {"X-Request-Id": "mine"})
            ids = header_values(headers, "X-Request-Id")
            expect(status == 404 and len(ids) == 1 and REQUEST_ID.fullmatch(ids[0]), f"{status} {ids}")

        r.check("nginx.conf's own 404 carries nginx's request id", not_found_id)
        # While `jwt` resolves to 127.0.0.2 only, where the real replica listens.
        grpc_checks(r, grpc, replica, grpc_front)

        def scale_up():
            expect(spread(front) == {"a"}, "traffic before b was in DNS")
            dns.addresses = ["127.0.0.2", "127.0.0.3"]
            wait_until("b to get traffic", lambda: "b" in spread(front, 4))
            expect(spread(front) == {"a", "b"}, "not both replicas")

        def scale_down():
            a.kill()  # still in DNS: the window before nginx re-resolves
            expect(spread(front) == {"b"}, "a request failed instead of moving to b")
            dns.addresses = ["127.0.0.3"]
            time.sleep(2.5)
            expect(spread(front) == {"b"}, "after re-resolution")

        r.check("scale up: a replica added to DNS gets traffic without reload", scale_up)
        r.check("scale down: a killed replica's requests (POST too) are retried on another", scale_down)
        b.kill()
        all_down_checks(r, front)
    finally:
        nginx.stop(show_log=r.failed or sys.exc_info()[0] is not None)
        dns.shutdown()
        if replica:
            replica.stop()
            if r.failed:
                print("--- tokengate replica log (last lines)\n" + replica.tail())


def compose_uds_mode(r, binary, work, grpc):
    """compose.uds.yaml: nginx.conf with the Unix socket upstream, a real replica on it."""
    if grpc is None:
        raise SystemExit("--mode compose-uds needs --tokengate (a real replica on a Unix socket)")
    # As compose.uds.yaml: the socket's directory is the replica's, reachable by nginx's
    # workers' group and nobody else; the replica's primary group is that group, so
    # its 0660 socket is too. (Not root: everything runs as one user anyway.)
    root = os.geteuid() == 0
    group = next((g for g in ("nogroup", "nobody") if _group_exists(g)), None) if root else None
    gid = grp.getgrnam(group).gr_gid if group else os.getegid()
    run = work / "run"
    run.mkdir()
    os.chmod(work, 0o711)
    os.chown(run, -1, gid)
    os.chmod(run, 0o750)
    sock = run / "tokengate.sock"
    http_port = free_port()
    replica_dir = work / "replica"
    replica_dir.mkdir()
    (replica_dir / "config.yml").write_text(f"""
server: {{host: 127.0.0.2, port: {http_port}, unix_socket: "{sock}", trusted_proxies: [127.0.0.1]}}
grpc: {{port: 0}}
admin: {{listen: ""}}
login: {{open: true}}
logging: {{level: warn}}
database: {{url: "sqlite://{replica_dir}/tokengate.db?mode=rwc"}}
""")
    log = open(replica_dir / "replica.log", "wb")
    proc = subprocess.Popen([grpc["tokengate"], "--config", str(replica_dir / "config.yml")], cwd=replica_dir,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            **({"group": gid} if root else {}))
    dns = start_dns()
    dns.addresses = ["127.0.0.2"]
    front, app_port, grpc_front = free_port(), free_port(), free_port()
    for name in ("tokengate.locations.conf", "tokengate.protect.conf", "tokengate.grpc.conf"):
        shutil.copy(NGINX_DIR / name, work / name)
    upstream = (NGINX_DIR / "tokengate.upstream.uds.conf").read_text()
    upstream = rewrite(upstream, "unix:/run/tokengate/tokengate.sock", f"unix:{sock}", 1)
    (work / "tokengate.upstream.conf").write_text(upstream)
    text = (NGINX_DIR / "nginx.conf").read_text()
    text = rewrite(text, "include tokengate.upstream.conf;", "include tokengate.upstream.conf;", 1)
    text = rewrite(text, "listen 4000;", f"listen 127.0.0.1:{front};", 1)
    text = rewrite(text, "resolver 127.0.0.11 valid=5s", f"resolver 127.0.0.1:{dns.server_address[1]} valid=1s", 1)
    text = rewrite(text, "listen 9090;", f"listen 127.0.0.1:{grpc_front};", 1)
    text = rewrite(text, "server jwt:9090 resolve", f"server jwt:{free_port()} resolve", 1)
    text = rewrite(text, "127.0.0.1:8081", f"127.0.0.1:{app_port}", 2)
    text = rewrite(text, "access_log /dev/stdout", f"access_log {work}/access.log", 1)
    text = rewrite(text, "error_log stderr warn;", f"error_log {work}/error.log warn;", 1)
    if group:
        # nginx's workers, named: the group the replica's socket has.
        text = f"user nobody {group};\n" + text
    (work / "nginx.conf").write_text(text)
    nginx = None
    try:
        wait_until("the replica's socket", lambda: proc.poll() is None and sock.exists(), 30)
        nginx = Nginx(binary, work, work / "nginx.conf")
        wait_until("nginx to answer /ping through the socket", lambda: request(front, "GET", "/ping")[0] == 200)

        def socket_mode():
            st = sock.stat()
            expect(st.st_mode & 0o777 == 0o660 and st.st_gid == gid,
                   f"socket mode {oct(st.st_mode & 0o777)}, gid {st.st_gid} (want 0660, {gid})")

        def flow():
            json_hdr = {"Content-Type": "application/json"}
            status, _, body = request(front, "POST", "/login", json_hdr, b'{"user_id": "42"}')
            expect(status == 200, f"/login {status} {body[:200]!r}")
            access = json.loads(body)["access"]
            bearer = {"Authorization": f"Bearer {access}"}
            status, _, body = request(front, "GET", "/app/orders", bearer)
            expect(status == 200 and json.loads(body)["user_id"] == "42", f"/app/ {status} {body[:200]!r}")
            status, _, body = request(front, "POST", "/logout", bearer)
            expect(status == 200, f"/logout {status} {body[:200]!r}")
            status, _, body = request(front, "GET", "/app/orders", bearer)
            expect(status == 401, f"/app/ after logout {status} {body[:200]!r}")

        def over_the_socket():
            lines = [json.loads(l) for l in (work / "access.log").read_text().splitlines()]
            api = [l for l in lines if l["uri"] in ("/ping", "/login", "/logout")]
            ups = {l["upstream"] for l in api}
            expect(len(api) >= 3 and ups == {f"unix:{sock}"}, f"upstreams of the API requests: {ups}")

        r.check("the replica's socket is 0660 in the group of nginx's workers", socket_mode)
        r.check("through the socket: login, the app with X-User-Id, logout, then 401", flow)
        r.check("nginx reached tokengate over the socket only (access log: unix:)", over_the_socket)
    finally:
        if nginx:
            nginx.stop(show_log=r.failed or sys.exc_info()[0] is not None)
        dns.shutdown()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if r.failed:
            print("--- tokengate replica log (last lines)\n"
                  + (replica_dir / "replica.log").read_text(errors="replace")[-2000:])


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def native_mode(r, binary, work, grpc):
    a = TrackingServer(("127.0.0.2", 0), TokengateStandIn, "a")
    port = a.server_address[1]
    b = TrackingServer(("127.0.0.3", port), TokengateStandIn, "b")
    app = TrackingServer(("127.0.0.1", 0), AppStandIn, "app")
    front, grpc_front = free_port(), free_port()
    replica = start_grpc_replica(grpc, work)
    grpc_port = replica.port if replica else free_port()
    (work / "nginx.conf").write_text(f"""
worker_processes 2;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format ids '$request_id $status "$request_method $uri"';
    access_log {work}/access.log ids;
    upstream tokengate {{
        # Shared by both workers, as in compose: a replica marked failed is
        # failed for every worker, so polling sees the state requests meet.
        zone tokengate 64k;
        server 127.0.0.2:{port} max_fails=1 fail_timeout=5s;
        server 127.0.0.3:{port} max_fails=1 fail_timeout=5s;
        keepalive 16;
    }}
    upstream app {{
        server 127.0.0.1:{app.server_address[1]};
        keepalive 4;
    }}
    upstream tokengate_grpc {{
        server 127.0.0.2:{grpc_port} max_fails=1 fail_timeout=5s;
        keepalive 4;
    }}
    server {{
        # Debian 12's nginx 1.22: the listen parameter (no `http2` directive yet).
        listen 127.0.0.1:{grpc_front} http2;
        include {NGINX_DIR}/tokengate.grpc.conf;
    }}
    server {{
        listen 127.0.0.1:{front};
        include {NGINX_DIR}/tokengate.locations.conf;
        location /app/ {{
            include {NGINX_DIR}/tokengate.protect.conf;
            proxy_pass http://app;
        }}
        location /app/admin/ {{
            set $tokengate_scope "admin";
            include {NGINX_DIR}/tokengate.protect.conf;
            proxy_pass http://app;
        }}
        location /reports/ {{
            set $tokengate_scope "reports:read";
            include {NGINX_DIR}/tokengate.protect.conf;
            proxy_pass http://app;
        }}
        location /legacy/ {{
            set $tokengate_app_authorization $http_authorization;
            include {NGINX_DIR}/tokengate.protect.conf;
            proxy_pass http://app;
        }}
        location / {{
            default_type application/json;
            return 404 '{{"error":"not_found","error_description":"no such endpoint"}}';
        }}
    }}
}}
""")
    nginx = Nginx(binary, work, work / "nginx.conf")
    try:
        wait_until("nginx to answer /ping", lambda: request(front, "GET", "/ping")[0] == 200)

        def app_headers(doc, auth):
            got = [(k.lower(), v) for k, v in doc["headers"]]
            for name, want in seen_by_app(auth).items():
                values = [v for k, v in got if k == name.lower()]
                expect(values == ([want] if want else []), f"app got {name}: {values}, want {want}")

        def app_request_id(doc, _headers):
            values = [v for k, v in doc["headers"] if k.lower() == "x-request-id"]
            expect(len(values) == 1, f"the app got X-Request-Id {values}")
            return values[0]

        common_checks(r, front, [a, b], app_headers, work, app_request_id)
        grpc_checks(r, grpc, replica, grpc_front)

        def forwarded_authorization():
            for auth in ("Bearer good", API_TOKEN):
                status, _, body = request(front, "GET", "/legacy/x", {"Authorization": auth})
                expect(status == 200, f"{auth}: {status} {body[:200]!r}")
                got = [v for k, v in json.loads(body)["headers"] if k.lower() == "authorization"]
                expect(got == [auth], f"the opted-in app got Authorization {got}")
            status, headers, body = request(front, "GET", "/legacy/x", {"Authorization": "Bearer forged"})
            expect_json_error(status, headers, body, 401, "unauthorized")

        def no_variable_warnings():
            log = (work / "error.log").read_text(errors="replace") if (work / "error.log").exists() else ""
            expect("uninitialized" not in log, f"nginx warned: {log[-500:]}")

        r.check("a location that opts in ($tokengate_app_authorization) passes Authorization to its app",
                forwarded_authorization)
        r.check("no uninitialized-variable warnings from locations that opt in to nothing",
                no_variable_warnings)

        def failover():
            expect(spread(front) == {"a", "b"}, "not both replicas")
            a.kill()
            expect(spread(front) == {"b"}, "a request failed instead of moving to b")

        def register_not_replayed():
            # Both replicas drop what they get: a /register is not tried on the
            # other one (a /login would be, as failover shows).
            for x in (a, b):
                x.dropped.clear()
            status, headers, body = request(front, "POST", "/register",
                                            {"Content-Type": "application/json", DROP: "1"}, b"{}")
            expect_json_error(status, headers, body, 503, "temporarily_unavailable")
            got = a.dropped + b.dropped
            expect(got == ["/register"], f"received by replicas: {got}")
            # The dropping replica is out for fail_timeout (5s): wait for it.
            wait_until("both replicas to take requests again", lambda: spread(front, 4) == {"a", "b"}, 10)

        r.check("a POST /register a replica received is never sent to another", register_not_replayed)
        r.check("a killed replica's requests (POST too) are retried on another", failover)
        b.kill()
        all_down_checks(r, front)
    finally:
        nginx.stop(show_log=r.failed or sys.exc_info()[0] is not None)
        if replica:
            replica.stop()
            if r.failed:
                print("--- tokengate replica log (last lines)\n" + replica.tail())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nginx", default="nginx", help="nginx binary")
    parser.add_argument("--mode", choices=("compose", "native", "compose-uds"), required=True)
    parser.add_argument("--tokengate", help="tokengate binary: also run the gRPC server, in front of it")
    parser.add_argument("--grpc-probe", help="examples/grpc_probe binary (with --tokengate)")
    args = parser.parse_args()
    binary = shutil.which(args.nginx) or args.nginx
    if bool(args.tokengate) != bool(args.grpc_probe) and args.mode != "compose-uds":
        parser.error("--tokengate and --grpc-probe go together")
    grpc = ({"tokengate": str(Path(args.tokengate).resolve()),
             "probe": str(Path(args.grpc_probe).resolve()) if args.grpc_probe else None}
            if args.tokengate else None)

    r = Report()
    work = Path(tempfile.mkdtemp(prefix="tokengate-nginx-"))
    try:
        modes = {"compose": compose_mode, "native": native_mode, "compose-uds": compose_uds_mode}
        modes[args.mode](r, binary, work, grpc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
