"""nginx cases: tokengate behind nginx's auth_request beside the ceilings (no
auth, an upstream that says yes at once, the least an auth_request setup can
be), the shipped config, nginx to the replica over its Unix socket, and the
cluster with 3 replicas."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .clients import free_port
from .cluster import ExtraNginx
from .common import NGINX_CONF_DIR

if TYPE_CHECKING:
    from .harness import Bench

# The replica's socket in nginx_tokengate_auth_uds(_cached); a Unix socket's path
# has at most 107 bytes.
UDS_NAME = "tokengate.sock"
SUN_PATH_MAX = 107


def unix_socket(b: Bench, want, cluster: str, case: str) -> str | None:
    """Where replica 0 of `cluster` listens on a Unix socket too
    (server.unix_socket, in the cluster's directory; TCP cases are unchanged)
    for `case`; None if the case is not wanted or the path is too long."""
    if not want(case):
        return None
    uds = str(b.work / cluster / UDS_NAME)
    if len(uds.encode()) <= SUN_PATH_MAX:
        return uds
    b.notes.append(f"{case}: {uds} is longer than a Unix socket's {SUN_PATH_MAX} bytes "
                   f"(a shorter --out); skipped")
    return None


def shipped_front(port: int, tokengate_server: str, app_port: int) -> str:
    """nginx_tokengate_auth's front, as the cluster's nginx has it (the
    shared tokengate.locations.conf / tokengate.protect.conf, /app/ to the
    cluster's echo app), with `upstream tokengate` at `tokengate_server`."""
    return front(port, tokengate_server, app_port,
                 f"include {NGINX_CONF_DIR}/tokengate.protect.conf;")


def front(port: int, tokengate_server: str, app_port: int, protect: str,
          http_extra: str = "", server_extra: str = "") -> str:
    """The fronts' common nginx: `upstream tokengate` at `tokengate_server`,
    the echo app, tokengate.locations.conf for the API, and /app/ protected
    by the `protect` lines."""
    shared = NGINX_CONF_DIR
    return f"""{http_extra}    upstream tokengate {{
        server {tokengate_server} max_fails=1 fail_timeout=2s;
        keepalive 64;
        keepalive_timeout 5s;
    }}
    upstream app {{ server 127.0.0.1:{app_port}; keepalive 64; keepalive_timeout 5s; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 100000;
        include {shared}/tokengate.locations.conf;
{server_extra}        location /app/ {{
            {protect}
            proxy_pass http://app;
        }}
    }}"""


def upstream_204_front(port: int, app_port: int) -> str:
    """nginx_upstream_204_auth: nginx_tokengate_auth's front, unchanged, with
    an auth service that costs nothing in tokengate's place (a server block
    of this nginx answering every check at once with the identity headers a
    session's check gets from tokengate). The ceiling of any auth service
    reached over TCP in this deployment: the same hop, the same
    auth_request_set and proxy_set_header work, the same app."""
    auth = free_port()
    return shipped_front(port, f"127.0.0.1:{auth}", app_port) + f"""
    server {{
        listen 127.0.0.1:{auth} backlog=4096;
        keepalive_requests 100000;
        location / {{
            add_header Cache-Control no-store;
            add_header X-User-Id 42;
            add_header X-Session-Id 3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b;
            add_header X-Request-Id $http_x_request_id;
            return 200;
        }}
    }}"""


def bare_204_front(port: int) -> str:
    """nginx_bare_204_auth: the least an auth_request setup can be. HEAD to
    an upstream that answers 204 at once, nothing passed on to the app, and
    an app that answers a constant. What the hop alone costs nginx."""
    auth, app = free_port(), free_port()
    return f"""    upstream app {{ server 127.0.0.1:{app}; keepalive 64; keepalive_timeout 5s; }}
    upstream auth204 {{ server 127.0.0.1:{auth}; keepalive 64; keepalive_timeout 5s; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 100000;
        location /app/ {{
            auth_request /_auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }}
        location = /_auth {{
            internal;
            proxy_pass http://auth204/authenticate;
            proxy_method HEAD;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{ listen 127.0.0.1:{app} backlog=4096; keepalive_requests 100000;
             location / {{ return 200 '{{"app":"echo"}}\n'; }} }}
    server {{ listen 127.0.0.1:{auth} backlog=4096; keepalive_requests 100000;
             location / {{ return 204; }} }}"""


def measure_on_front(b: Bench, case: str, http_block, ready_path: str, headers: list[str],
                     root_workers: bool = False, check_for=None, **measure) -> None:
    """`case` against GET /app/ on an ExtraNginx (counted as nginx),
    which runs only for the case. The pre-check: GET /app/ answers 2xx
    twice, or `check_for(port, headers)`'s check."""
    front = ExtraNginx(b.work / f"nginx-{case}", b.o.nginx_workers, root_workers)
    try:
        port = front.up(http_block, ready_path)
        b.extra_pids = [front.proc.pid]
        auth = dict(h.split(": ", 1) for h in headers)
        check = (check_for(port, auth) if check_for is not None
                 else b.expect_2xx(port, "/app/", headers=auth, times=2))
        b.measure(case, f"http://127.0.0.1:{port}/app/", "get.lua", headers,
                  check=check, **measure)
    finally:
        b.extra_pids = []
        front.down()


def single_replica_cases(b: Bench, want, token: str, uds: str | None) -> None:
    """The strict cluster's nginx cases: the shipped config against nginx
    alone and against auth services that cost nothing, then nginx to the
    replica over its Unix socket (`uds`, from `unix_socket`)."""
    nginx = b.state["nginx"]["port"]
    paths = b.state["paths"]
    front = f"http://127.0.0.1:{nginx}"
    bearer = f"Authorization: Bearer {token}"
    auth_hdr = {"Authorization": f"Bearer {token}"}
    if want("nginx_trivial_auth"):
        b.measure("nginx_trivial_auth", f"{front}{paths['trivial']}", "get.lua", [bearer],
                  check=b.expect_2xx(nginx, paths["trivial"], headers=auth_hdr))
    if want("nginx_tokengate_auth"):
        b.measure("nginx_tokengate_auth", f"{front}{paths['protected']}", "get.lua", [bearer],
                  redis_ops=True,
                  check=b.expect_2xx(nginx, paths["protected"], headers=auth_hdr))
    app_port = b.state["nginx"]["app_port"]
    if want("nginx_upstream_204_auth"):
        measure_on_front(b, "nginx_upstream_204_auth",
                         lambda p: upstream_204_front(p, app_port), "/ping", [bearer])
    if want("nginx_bare_204_auth"):
        measure_on_front(b, "nginx_bare_204_auth", bare_204_front, "/app/", [bearer])
    if uds:
        measure_on_front(b, "nginx_tokengate_auth_uds",
                         lambda p: shipped_front(p, f"unix:{uds}", app_port), "/ping",
                         [bearer], root_workers=True, redis_ops=True)


def three_replicas(b: Bench) -> None:
    """nginx_tokengate_auth_3r: the shipped config on a cluster of 3 replicas."""
    b.start_cluster(3, "cluster-3")
    port3 = b.replica_port(0)
    nginx3 = b.state["nginx"]["port"]
    token3 = b.login(port3)["access"]
    hdr3 = {"Authorization": f"Bearer {token3}"}
    b.measure("nginx_tokengate_auth_3r",
              f"http://127.0.0.1:{nginx3}{b.state['paths']['protected']}",
              "get.lua", [f"Authorization: Bearer {token3}"], redis_ops=True,
              check=b.expect_2xx(nginx3, b.state["paths"]["protected"], headers=hdr3))
    for k, v in b.peak_rss().items():
        b.rss[f"3r-{k}"] = v
    b.stop_cluster()
    b.note_noise(only="nginx_tokengate_auth_3r")
