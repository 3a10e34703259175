#!/usr/bin/env python3
"""tokengate's benchmark: the service against this machine's own ceilings, in one run.

Run it through `scripts/bench` (installs wrk, builds the binary). What it does:

1. starts a native cluster on loopback (redis-server, 1 tokengate replica,
   nginx with the real nginx/*.conf files) with `scripts/cluster up`;
2. runs every case with wrk, each after a short warm-up, in one run so the
   ratios compare numbers taken minutes apart on the same machine:
     ping, ping_grpc_idle (ping while --grpc-idle-connections idle HTTP/2
     connections sit on the replica's gRPC port: tokengate_bench/idle_flood.py),
     authenticate (direct), authenticate_api_token (direct, an API token
     made with `tokengate token create` on the cluster's database; cached in
     Redis after the pre-check), nginx_trivial_auth, nginx_tokengate_auth,
     nginx_upstream_204_auth (an extra nginx with nginx_tokengate_auth's
     config and app, an upstream that says yes at once in tokengate's place:
     the ceiling of any auth service reached over TCP in this deployment),
     nginx_bare_204_auth (the least an auth_request setup can be: no identity
     passed on, an app that answers a constant),
     nginx_tokengate_auth_uds (an extra nginx with the same shared files, its
     upstream the replica's Unix socket, server.unix_socket, instead of TCP),
     nginx_tokengate_bearer_auth and nginx_tokengate_cookie_auth (browser
     sessions: the Bearer gate and the cookie gate /oauth2/auth, each on an
     extra nginx built alike, a session signed in through the sign-in form;
     tokengate_bench/browser_cases.py),
     login, refresh (pre-made pool, successors chained), logout (pre-made pool);
     grpc_refresh and grpc_refresh_nginx: AuthApi/Refresh over gRPC, to the
     replica's grpc.port and through nginx's gRPC server, with
     examples/grpc_load.rs (tonic's client, HTTP/2 streams over a few
     connections; pools minted by HTTP /login, successors chained);
   then the cached cluster (SPEC §10, auth.local_cache on in both replicas:
   replica 0 behind nginx and over its Unix socket behind an extra nginx, and
   replica 1 started beside it): authenticate_cached,
   nginx_tokengate_auth_cached, nginx_tokengate_auth_uds_cached; Redis
   commands per cached authenticate (also on a replica 2 that writes touches
   behind every second); invalidation_delay (logout on replica 1,
   then replica 0 polled until 401, --trials times); cached_rss (replica 0's
   VmRSS around caching --cached-sessions sessions); --no-cached skips it;
   then a cluster with one OAuth client for oauth_token (client_credentials,
   right secret) alone and while a second wrk floods /oauth/token with wrong
   secrets (oauth_token_flood_same_id, _random_ids, _random_addrs);
   then login_client (a login client's /login) alone, and login_client_flooded
   on a fresh replica while another address floods its id with wrong secrets;
   then a cluster for the users' cases, which are argon2-bound (one argon2id
   hash or verification each, its parameters read from a stored hash):
   register (new emails), password_login (users registered in a setup
   phase), and authenticate_with_users (authenticate again, the database
   full of users: it never touches the database, so it must not change);
   then a last cluster with 3 replicas for nginx_tokengate_auth_3r;
3. measures costs: Redis round trips and commands per operation (INFO deltas
   over a sequential run, and commandstats over each load run; API tokens
   cached and, with their cache entry deleted before each request, missed), Redis memory
   per live session (INFO used_memory around creating --sessions sessions, and
   MEMORY USAGE of one key), each replica's peak RSS (VmHWM);
4. prints a table, the ratios and the targets, writes target/bench/report.json
   (and report.txt), and exits non-zero if any request failed (non-2xx, socket
   errors): a benchmark never fails because the machine is slow.

Only Python's standard library: Redis is spoken to over a socket (RESP), HTTP
with http.client.
"""

# The code is in tokengate_bench/, one module per thing measured (its
# __init__.py lists them); the order of the run is tokengate_bench/run.py.

from __future__ import annotations

import signal
import sys

from tokengate_bench import options
from tokengate_bench.common import BenchError
from tokengate_bench.run import run


def main() -> int:
    o = options.parse(__doc__)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        return run(o)
    except BenchError as e:
        print(f"\nBENCHMARK BROKEN: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
