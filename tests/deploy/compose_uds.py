"""compose.uds.yaml merged over compose.yaml the way Compose merges an override, then
what the one-host set-up needs: the socket's path, volume, owner and group against nginx's
worker user and the Dockerfile's user. Usage: compose_uds.py ROOT SCHEMA_JSON."""
import json, os, re, sys
import jsonschema, yaml
from checklist import errors, finish, need

root, schema_path = sys.argv[1:]
base = yaml.safe_load(open(os.path.join(root, "compose.yaml")))
over = yaml.safe_load(open(os.path.join(root, "compose.uds.yaml")))


validator = jsonschema.Draft7Validator(json.load(open(schema_path)))
problems = [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in validator.iter_errors(over)]
need(not problems, f"compose.uds.yaml: Compose Specification schema ({problems or 'valid'})")

def target(v):
    return v.get("target") if isinstance(v, dict) else str(v).split(":")[1]

def merge(a, b, key=None):
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v, k) if k in a else v
        return out
    if key == "volumes" and isinstance(a, list) and isinstance(b, list):
        by = {target(v): v for v in a}
        by.update({target(v): v for v in b})
        return list(by.values())
    return b

doc = merge(base, over)
problems = [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in validator.iter_errors(doc)]
need(not problems, f"merged over compose.yaml: schema ({problems or 'valid'})")
services = doc.get("services", {})
jwt, nginx = services.get("jwt", {}), services.get("nginx", {})
need(set(over.get("services", {})) <= {"jwt", "nginx"}, "the override changes only jwt and nginx")

def mount(v):
    if isinstance(v, dict):
        return v.get("type", "volume"), v.get("source"), v.get("target"), bool(v.get("read_only"))
    parts = str(v).split(":")
    kind = "bind" if parts[0].startswith((".", "/", "~")) else "volume"
    return kind, parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")

sock = str((jwt.get("environment") or {}).get("TOKENGATE__SERVER__UNIX_SOCKET", ""))
need(sock.startswith("/") and sock.endswith(".sock"), f"jwt listens on a Unix socket, server.unix_socket ({sock!r})")
need(len(sock.encode()) <= 107, "the socket's path fits a sockaddr_un (107 bytes)")
sock_dir = os.path.dirname(sock)
volumes = doc.get("volumes") or {}
jm = [m for m in map(mount, jwt.get("volumes", [])) if m[2] == sock_dir]
nm = [m for m in map(mount, nginx.get("volumes", [])) if m[2] == sock_dir]
need(len(jm) == 1 and jm[0][0] == "volume" and jm[0][1] in volumes and not jm[0][3],
     f"jwt has {sock_dir} on a named volume, writable (it creates the socket there)")
need(len(nm) == 1 and bool(jm) and nm[0][1] == jm[0][1], f"nginx mounts the same volume at {sock_dir}")
need(jwt.get("scale") == 1, "jwt: scale 1 (replicas on one socket path would replace each other's socket)")
need("ports" not in jwt, "jwt still publishes no port")

# Owner and group. tokengate makes the socket 0660, owned by its uid and (primary)
# gid. nginx's workers (the official image: user nginx, uid 101, gid 101; a worker's
# groups are reset to its user's own, so group_add would not reach them) must be in
# that group: so the replica's gid is 101.
NGINX_WORKER_GID = "101"
need(re.fullmatch(r"nginx:[\w.-]+", str(nginx.get("image", ""))) is not None,
     f"nginx is the official image, workers uid/gid 101 (found {nginx.get('image')!r})")
dockerfile = open(os.path.join(root, "Dockerfile")).read()
image_user = re.findall(r"^USER (\d+)(?::(\d+))?", dockerfile, re.M)[-1][0]
uid, _, gid = str(jwt.get("user", "")).partition(":")
need(uid == image_user, f"jwt runs as the image's user {image_user} (found {jwt.get('user')!r})")
need(gid == NGINX_WORKER_GID, f"jwt's group is nginx's workers' ({NGINX_WORKER_GID}): the socket's group")
vol = volumes.get(jm[0][1] if jm else "", {}) or {}
opts = vol.get("driver_opts") or {}
o = dict(kv.partition("=")[::2] for kv in str(opts.get("o", "")).split(",") if kv)
mode = int(o.get("mode", "0"), 8)
need(opts.get("type") == "tmpfs", "the socket volume is a tmpfs (no stale socket outlives it)")
need(o.get("uid") == uid and o.get("gid") == gid,
     f"the socket volume belongs to the replica's user and nginx's group ({o.get('uid')}:{o.get('gid')})")
need(mode & 0o300 == 0o300 and mode & 0o010 and not mode & 0o007,
     f"the socket volume: the owner may create in it, the group reach it, others nothing ({oct(mode)})")

# nginx: the UDS upstream file over tokengate.upstream.conf, which nginx.conf includes.
def directives(name):
    return [l.split("#", 1)[0].strip() for l in open(os.path.join(root, "nginx", name))
            if l.split("#", 1)[0].strip()]
over_file = [m for m in map(mount, nginx.get("volumes", []))
             if m[2] == "/etc/nginx/tokengate/tokengate.upstream.conf"]
need(len(over_file) == 1 and over_file[0][1] == "./nginx/tokengate.upstream.uds.conf" and over_file[0][3],
     "nginx mounts nginx/tokengate.upstream.uds.conf over tokengate.upstream.conf, read-only")
need(any(str(v).startswith("./nginx:/etc/nginx/tokengate") for v in nginx.get("volumes", [])),
     "nginx keeps compose.yaml's ./nginx mount")
need("include tokengate.upstream.conf;" in directives("nginx.conf"), "nginx.conf includes tokengate.upstream.conf")
uds = directives("tokengate.upstream.uds.conf")
servers = [l for l in uds if l.startswith("server ")]
need(len(servers) == 1 and servers[0].split()[1] == f"unix:{sock}",
     f"tokengate.upstream.uds.conf: one server, unix:{sock} ({servers})")
need("upstream tokengate {" in uds and any(l.startswith("keepalive ") for l in uds),
     "tokengate.upstream.uds.conf: upstream tokengate with keepalive")

# Over the socket every peer is 127.0.0.1: its X-Forwarded-For is believed only if trusted.
settings = yaml.safe_load(open(os.path.join(root, "config.compose.yml"))) or {}
proxies = [str(p) for p in (settings.get("server") or {}).get("trusted_proxies") or []]
need(any(p in ("127.0.0.1", "127.0.0.1/32", "127.0.0.0/8") for p in proxies),
     "config.compose.yml trusts 127.0.0.1 (the socket's peers) for X-Forwarded-For")
finish()
