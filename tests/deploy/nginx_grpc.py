"""What nginx's gRPC config promises, read from its directives (comments stripped).
Usage: nginx_grpc.py NGINX_DIR."""
import re, sys
from pathlib import Path
from checklist import finish, need

d = Path(sys.argv[1])
def directives(name):
    return [l.split("#", 1)[0].strip() for l in (d / name).read_text().splitlines()
            if l.split("#", 1)[0].strip()]
grpc, main = directives("tokengate.grpc.conf"), directives("nginx.conf")

need("grpc_set_header X-Forwarded-For $remote_addr;" in grpc,
     "gRPC: x-forwarded-for is set to $remote_addr (replaced, never appended)")
need(not any("$proxy_add_x_forwarded_for" in l for l in grpc), "gRPC: no $proxy_add_x_forwarded_for")
for h in ("X-User-Id", "X-Session-Id", "X-Scope"):
    need(f'grpc_set_header {h} "";' in grpc, f"gRPC: a client-sent {h} is cleared")
nexts = [l for l in grpc if l.startswith("grpc_next_upstream ")]
need(nexts == ["grpc_next_upstream error timeout;"],
     f"gRPC: retried only before a replica got the call (grpc_next_upstream error timeout, "
     f"no non_idempotent): {nexts}")
need(not any("non_idempotent" in l for l in grpc), "no non_idempotent in the gRPC file")
need("grpc_pass grpc://tokengate_grpc;" in grpc, "gRPC: grpc_pass to upstream tokengate_grpc")
routed = [l for l in grpc if l.startswith("location ~ ")]
pattern = routed[0].split(None, 2)[2].rsplit("{", 1)[0].strip() if len(routed) == 1 else "$^"
proxied = lambda path: re.search(pattern, path) is not None
need(proxied("/realchat.auth.v1.AuthApi/Login") and proxied("/grpc.health.v1.Health/Check")
     and proxied("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
     "gRPC: one proxied location, for AuthApi, Health/Check and reflection")
need(not proxied("/grpc.health.v1.Health/Watch") and not proxied("/realchat.admin.v1.Admin/X"),
     "gRPC: Health/Watch (long-lived streams) and other services are not published (SPEC §11)")
reads = [l for l in grpc if l.startswith("grpc_read_timeout ")]
need(reads == ["grpc_read_timeout 35s;"],
     f"gRPC: grpc_read_timeout just above a replica's 30 s call timeout, no stream held longer: {reads}")
need(any(re.fullmatch(r"server jwt:9090 resolve\b.*;", l) for l in main),
     "nginx.conf: upstream tokengate_grpc has `server jwt:9090 resolve` (re-resolved like HTTP)")
block = main[main.index("upstream tokengate_grpc {"):] if "upstream tokengate_grpc {" in main else []
block = block[:block.index("}")] if "}" in block else block
need(any(l.startswith("zone ") for l in block) and any(l.startswith("keepalive ") for l in block),
     "nginx.conf: tokengate_grpc has a zone (for resolve) and keepalive")
need("listen 9090;" in main and "http2 on;" in main and "include tokengate.grpc.conf;" in main,
     "nginx.conf: a gRPC server on :9090 with `http2 on;` includes tokengate.grpc.conf")
finish()
