"""The admin token as compose hands it to a replica (admin.token_file): the debug tokengate
must start with it, create an API token on its admin listener with it, refuse a wrong one,
answer 404 for /admin/tokens on its public port, and the API token must pass
/authenticate. Usage: admin_token.py TOKENGATE_BINARY WORKDIR (WORKDIR/secrets/admin_token)."""
import http.client, json, os, socket, subprocess, sys, time
from checklist import errors, finish, need

binary, d = sys.argv[1:]
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
port, admin_port = free_port(), free_port()
env = {**os.environ, "TOKENGATE__SERVER__HOST": "127.0.0.1", "TOKENGATE__SERVER__PORT": str(port),
       "TOKENGATE__ADMIN__LISTEN": f"127.0.0.1:{admin_port}",
       "TOKENGATE__GRPC__PORT": "0", "TOKENGATE__LOGGING__LEVEL": "warn",
       "TOKENGATE__DATABASE__URL": f"sqlite://{d}/tokengate.db?mode=rwc",
       "TOKENGATE__ADMIN__TOKEN_FILE": f"{d}/secrets/admin_token"}
log = open(f"{d}/tokengate.log", "wb")
proc = subprocess.Popen([binary], cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def call(method, path, token, body=None, at=admin_port):
    conn = http.client.HTTPConnection("127.0.0.1", at, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()

try:
    deadline = time.monotonic() + 30
    up = False
    while proc.poll() is None and time.monotonic() < deadline and not up:
        try:
            up = call("GET", "/ping", "-", at=port)[0] == 200 and call("GET", "/ping", "-")[0] == 200
        except OSError:
            time.sleep(0.1)
    need(up, "tokengate starts with the admin token file and answers /ping on both listeners")
    if up:
        admin = open(f"{d}/secrets/admin_token").read()
        status, _, body = call("POST", "/admin/tokens", admin, {"name": "check-deploy", "scopes": ["reports:read"]})
        created = json.loads(body) if status == 201 else {}
        need(str(created.get("token", "")).startswith("tg_live_"),
             f"the admin token creates an API token on POST /admin/tokens (answered {status})")
        wrong = admin[:-1] + ("B" if admin.endswith("A") else "A")
        status, _, _ = call("GET", "/admin/tokens", wrong)
        need(status == 401, f"a wrong admin token is refused with 401 (answered {status})")
        status, _, _ = call("GET", "/admin/tokens", admin, at=port)
        need(status == 404, f"the public port answers 404 for /admin/tokens, even with the admin token "
                            f"(answered {status})")
        if created:
            status, headers, _ = call("GET", "/authenticate?scope=reports:read", created["token"], at=port)
            need(status == 200 and headers.get("x-user-id") == "token:check-deploy",
                 f"that API token passes /authenticate?scope=reports:read as token:check-deploy "
                 f"(answered {status}, X-User-Id {headers.get('x-user-id')!r})")
finally:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
if errors:
    print(open(f"{d}/tokengate.log", errors="replace").read()[-2000:])
finish()
