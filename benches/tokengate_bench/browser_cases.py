"""Browser sessions (SPEC §15) behind nginx: the cookie gate `/oauth2/auth`
beside the Bearer gate, each on an extra nginx built the same way, on the
strict cluster's replica. A browser session is made as a person makes one:
`POST /register`, then the sign-in form (`GET /oauth2/sign_in` for its CSRF
cookie and token, `POST /oauth2/sign_in`), whose `303` sets the cookie."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import time
import urllib.parse
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING

from .clients import http_request
from .common import NGINX_CONF_DIR, BenchError, log
from .nginx_cases import front, measure_on_front, shipped_front
from .user_cases import USER_PASSWORD

if TYPE_CHECKING:
    from .harness import Bench

# The session cookie's name (cookie.name's default; the cluster keeps it).
COOKIE_NAME = "__Host-tokengate"
CSRF_COOKIE_NAME = COOKIE_NAME + "-csrf"
# Run together: the cookie case and the Bearer case on an identical nginx,
# the pair the target compares.
BROWSER_CASES = ["nginx_tokengate_bearer_auth", "nginx_tokengate_cookie_auth"]
BROWSER_EXPLAINED = (
    "nginx_tokengate_cookie_auth: GET /app/ with the browser cookie on an extra nginx whose "
    "/app/ is auth_request /oauth2/auth with the shipped nginx/browser/ files (the cookie gate: "
    "one EVALSHA of browser.lua, no JWT), identity headers passed to the cluster's echo app. nginx_tokengate_bearer_auth: "
    "nginx_tokengate_auth's shipped config (HEAD /authenticate, Bearer JWT) on an extra nginx "
    "built the same way (same workers, upstream keepalive 64, same app), run just before it: "
    "the pair the target compares, since the cluster's own nginx also serves the echo app in "
    "its own workers. Same replica, same Redis.")


def set_cookies(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Name -> value of every Set-Cookie of an answer."""
    jar: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            c = SimpleCookie()
            c.load(value)
            jar.update({k: m.value for k, m in c.items()})
    return jar


def request(port: int, method: str, path: str, headers=None, body: bytes | None = None):
    """One request on a new connection: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def sign_in(b: Bench, port: int) -> tuple[str, str]:
    """Registers a user on the replica at `port` and signs it in through the
    sign-in form; returns (the session cookie's value, the user's id)."""
    email = f"browser{int(time.time())}{os.getpid()}@bench.example"
    status, body, conn = http_request(port, "POST", "/register",
                                      body={"email": email, "password": USER_PASSWORD})
    conn.close()
    if status == 404:
        raise LookupError("this binary has no POST /register")
    if status != 201:
        raise BenchError(f"POST /register answered {status}: {body[:200]!r}")
    user_id = str(json.loads(body)["user_id"])

    status, headers, page = request(port, "GET", "/oauth2/sign_in")
    if status == 404:
        raise LookupError("this binary has no /oauth2/sign_in")
    csrf_cookie = set_cookies(headers).get(CSRF_COOKIE_NAME)
    token = re.search(rb'name="csrf"[^>]*value="([^"]+)"', page) or re.search(
        rb'value="([^"]+)"[^>]*name="csrf"', page)
    if status != 200 or not csrf_cookie or not token:
        raise BenchError(f"GET /oauth2/sign_in answered {status} without the CSRF cookie "
                         f"{CSRF_COOKIE_NAME} or the form's csrf field: {page[:300]!r}")
    form = urllib.parse.urlencode({"email": email, "password": USER_PASSWORD,
                                   "csrf": token.group(1).decode()}).encode()
    status, headers, page = request(port, "POST", "/oauth2/sign_in", {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": f"{CSRF_COOKIE_NAME}={csrf_cookie}",
        "Sec-Fetch-Site": "same-origin",
    }, form)
    handle = set_cookies(headers).get(COOKIE_NAME)
    if status != 303 or not handle:
        raise BenchError(f"POST /oauth2/sign_in answered {status} without {COOKIE_NAME}: "
                         f"{page[:300]!r}")
    return handle, user_id


def cookie_front(port: int, tokengate_server: str, app_port: int) -> str:
    """nginx_tokengate_cookie_auth's front: shipped_front's nginx (the same
    upstreams and keepalive, tokengate.locations.conf for the API beside
    it), whose /app/ asks the cookie gate instead, with the shipped browser
    files: nginx/browser/tokengate.browser.http.conf (the map that keeps
    tokengate's cookie from the app), tokengate.browser.conf (the internal
    /oauth2/auth and the pages) and tokengate.browser.protect.conf (the
    identity headers, `error_page 401 =302` to the sign-in page)."""
    browser = NGINX_CONF_DIR / "browser"
    return front(
        port, tokengate_server, app_port,
        f"auth_request /oauth2/auth;\n            include {browser}/tokengate.browser.protect.conf;",
        http_extra=f"    include {browser}/tokengate.browser.http.conf;\n",
        server_extra=f"        include {browser}/tokengate.browser.conf;\n")


def echo_check(port: int, headers: dict[str, str], user_id: str):
    """A pre-check: GET /app/ answers 200 twice, and the echo app got the
    signed-in user's id (so the gate, not a fallback, let it through)."""
    def check():
        for _ in range(2):
            status, _, body = request(port, "GET", "/app/", headers)
            if status != 200:
                raise BenchError(f"GET /app/ on :{port} answered {status}: {body[:200]!r}")
            got = json.loads(body).get("user_id")
            if got != user_id:
                raise BenchError(f"the app got X-User-Id {got!r}, want {user_id!r}")
    return check


def run(b: Bench, want, token: str) -> None:
    """The Bearer gate, then the cookie gate, each on an extra nginx built
    alike, to the strict cluster's replica 0 (`token`: a session's access
    token, as nginx_tokengate_auth uses)."""
    if not any(want(name) for name in BROWSER_CASES):
        return
    port = b.replica_port(0)
    try:
        handle, user_id = sign_in(b, port)
    except LookupError as e:
        b.notes.append(f"{', '.join(BROWSER_CASES)}: {e}; skipped")
        return
    log(f"browser session signed in for user {user_id} (cookie {len(handle)} chars)")
    app_port = b.state["nginx"]["app_port"]
    upstream = f"127.0.0.1:{port}"
    bearer = f"Authorization: Bearer {token}"
    cookie = f"Cookie: {COOKIE_NAME}={handle}"
    sub = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sub"]
    measure_on_front(b, "nginx_tokengate_bearer_auth",
                     lambda p: shipped_front(p, upstream, app_port), "/ping", [bearer],
                     redis_ops=True, check_for=lambda p, hdrs: echo_check(p, hdrs, str(sub)))
    measure_on_front(b, "nginx_tokengate_cookie_auth",
                     lambda p: cookie_front(p, upstream, app_port), "/ping", [cookie],
                     redis_ops=True, check_for=lambda p, hdrs: echo_check(p, hdrs, user_id))
