"""compose.yaml against the Compose Specification's JSON schema, and what the deployment
promises (scalable jwt, secrets, health-gated start, least privilege, networks), with the
config.compose.yml it mounts. Usage: compose.py COMPOSE_YAML SCHEMA_JSON (scripts/check-deploy)."""
import ipaddress, json, os, re, sys, urllib.parse
import jsonschema, yaml
from checklist import errors, finish, need

path, schema_path = sys.argv[1:]
root = os.path.dirname(os.path.abspath(path))
doc = yaml.safe_load(open(path))

validator = jsonschema.Draft7Validator(json.load(open(schema_path)))
for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
    errors.append(f"schema: {'/'.join(map(str, e.path)) or '(top)'}: {e.message}")
print(f"Compose Specification schema: {'valid' if not errors else 'INVALID'}")
for e in errors:
    print(f"  FAIL {e}")


def seconds(duration):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration))
    return sum(float(n) * units[u] for n, u in parts)

def condition(service, dep):
    deps = service.get("depends_on") or {}
    return deps.get(dep, {}).get("condition") if isinstance(deps, dict) else None

if isinstance(doc, dict) and not errors:
    services = doc.get("services", {})
    jwt, cache, db, nginx = (services.get(n, {}) for n in ("jwt", "cache", "db", "nginx"))
    env = jwt.get("environment", {})
    volumes = doc.get("volumes") or {}
    def mount(v):
        if isinstance(v, dict):
            return v.get("type", "volume"), v.get("source"), v.get("target")
        parts = str(v).split(":")
        return ("volume" if len(parts) > 1 and not parts[0].startswith((".", "/", "~")) else "bind",
                parts[0], parts[1] if len(parts) > 1 else parts[0])
    need("version" not in doc, "no obsolete top-level `version`")
    need(set(services) >= {"jwt", "cache", "db", "nginx"}, "services jwt, cache, db, nginx")
    need("build" in jwt, "jwt is built from the Dockerfile")
    need("ports" not in jwt and "container_name" not in jwt,
         "jwt has no host port and no container_name (--scale jwt=N works)")
    need(env.get("TOKENGATE__CACHE__URL") == "redis://cache:6379/0", "jwt uses the cache service")
    need(env.get("TOKENGATE__CACHE__PASSWORD_FILE") == "/run/secrets/redis_password"
         and env.get("TOKENGATE__AUTH__SECRET_FILE") == "/run/secrets/jwt_secret",
         "jwt reads the Redis password and JWT key from secret files")
    need(env.get("TOKENGATE__LOGGING__MODE") == "json", "jwt logs JSON")
    # The secrets (SPEC §12): made by the one-shot `secrets` service into one volume per
    # service that reads them, each mounted read-only at /run/secrets.
    def volume_at(svc, target):
        found = [m for m in map(mount, svc.get("volumes", [])) if m[2] == target]
        return found[0][1] if found and found[0][0] == "volume" else None
    def read_only(svc, target):
        return any(str(v).endswith(f":{target}:ro") for v in svc.get("volumes", []))
    init = services.get("secrets", {})
    need("init-secrets" in json.dumps(init.get("entrypoint", "")) and "--volumes" in init.get("command", []),
         "a one-shot `secrets` service runs scripts/init-secrets --volumes")
    need(init.get("network_mode") == "none" and init.get("restart") == "no",
         "`secrets` has no network and is never restarted")
    own = {"jwt": "jwt_secrets", "cache": "cache_secrets", "db": "db_secrets"}
    for name, vol in own.items():
        svc = services.get(name, {})
        need(volume_at(svc, "/run/secrets") == vol and read_only(svc, "/run/secrets") and vol in volumes,
             f"{name} mounts its own volume {vol} read-only at /run/secrets")
        need(condition(svc, "secrets") == "service_completed_successfully",
             f"{name} starts once `secrets` has completed")
        need(volume_at(init, f"/secrets/{name}") == vol, f"`secrets` writes {vol} at /secrets/{name}")
        holders = sorted(n for n, svc in services.items() if vol in [m[1] for m in map(mount, svc.get("volumes", []))])
        need(holders == sorted({name, "secrets"}), f"only {name} and `secrets` mount {vol} (found {holders})")
    need("secrets" not in doc, "no file secrets in compose.yaml (compose.secrets.yaml is the override for them)")
    # The admin API (SPEC §9): its token from the secret file, one way only
    # (tokengate refuses admin.token_hash beside admin.token_file).
    need(env.get("TOKENGATE__ADMIN__TOKEN_FILE") == "/run/secrets/admin_token"
         and "TOKENGATE__ADMIN__TOKEN_HASH" not in env,
         "jwt reads the admin token from /run/secrets/admin_token (admin.token_file), no token_hash beside it")
    need(condition(jwt, "cache") == "service_healthy", "jwt starts once cache is healthy")
    need(condition(jwt, "db") == "service_healthy", "jwt starts once db is healthy (migrations at start-up)")
    need("healthcheck" in " ".join(jwt.get("healthcheck", {}).get("test", [])),
         "jwt healthcheck runs `tokengate healthcheck`")
    need(seconds(jwt.get("stop_grace_period", "10s")) >= 10, "jwt stop_grace_period >= 10s")
    need(jwt.get("restart") == "unless-stopped", "jwt restart: unless-stopped")
    need("ports" not in cache, "cache is not published")
    cmd = " ".join(cache.get("command", []) if isinstance(cache.get("command"), list) else [cache.get("command", "")])
    need('--user default reset on ">$$(cat /run/secrets/redis_password)"' in cmd and "--requirepass" not in cmd,
         "cache: one ACL user, its password from the secret")
    need('"~tg:*"' in cmd and "+@all -@dangerous" in cmd,
         "cache: the user reaches tokengate's keys only, and no @dangerous command (CONFIG, FLUSHALL, DEBUG, ...)")
    need("--maxmemory " in cmd and "--maxmemory-policy noeviction" in cmd, "cache: maxmemory + noeviction")
    need("redis_password" in json.dumps(cache.get("healthcheck", {})), "cache healthcheck authenticates")
    need(nginx.get("ports") == ["4000:4000", "9090:9090"], "nginx publishes 4000:4000 (HTTP) and 9090:9090 (gRPC)")
    need("9090" in [str(p) for p in jwt.get("expose", [])], "jwt exposes 9090 (gRPC) to nginx")
    need(any(str(v).startswith("./nginx:") and str(v).endswith(":ro") for v in nginx.get("volumes", [])),
         "nginx mounts ./nginx read-only")
    need(condition(nginx, "jwt") == "service_healthy", "nginx starts once jwt is healthy")
    watched = {w.get("path") for w in (jwt.get("develop") or {}).get("watch", []) if w.get("action") == "rebuild"}
    need(watched >= {"./src", "./Cargo.toml", "./Cargo.lock", "./migrations", "./build.rs", "./proto"},
         f"`up --watch` rebuilds the replicas when what the image compiles changes ({sorted(watched)})")

    # PostgreSQL, shared by the replicas.
    image = str(db.get("image", ""))
    m = re.fullmatch(r"postgres:(\d+)(?:\.\d+)*(-alpine[\d.]*|-bookworm|-trixie)?", image)
    need(bool(m), f"db is the official postgres image pinned to a major (found {image!r})")
    major = int(m.group(1)) if m else 0
    db_env = db.get("environment", {})
    need(isinstance(db_env, dict) and db_env.get("POSTGRES_USER") == "postgres"
         and db_env.get("POSTGRES_DB") == "tokengate",
         "db: the superuser is `postgres`, the database `tokengate`")
    need(isinstance(db_env, dict) and db_env.get("POSTGRES_PASSWORD_FILE") == "/run/secrets/db_admin_password"
         and "POSTGRES_PASSWORD" not in db_env and "POSTGRES_HOST_AUTH_METHOD" not in db_env,
         "db: the superuser's password from its own secret file (never a value, never trust)")
    initdb = [m for m in map(mount, db.get("volumes", [])) if m[2].startswith("/docker-entrypoint-initdb.d/")]
    need([m[1] for m in initdb] == ["./scripts/postgres-init-role"],
         "db: scripts/postgres-init-role makes the replicas' role on first start")
    # The image's data directory: /var/lib/postgresql/data up to 17, the parent
    # (PGDATA /var/lib/postgresql/MAJOR/docker) from 18 on.
    data_dir = "/var/lib/postgresql/data" if major < 18 else "/var/lib/postgresql"
    data = [m for m in map(mount, db.get("volumes", [])) if m[2] == data_dir]
    need(len(data) == 1 and data[0][0] == "volume" and data[0][1] in volumes,
         f"db keeps {data_dir} on a named volume declared under top-level volumes")
    test = db.get("healthcheck", {}).get("test", [])
    test = " ".join(test) if isinstance(test, list) else str(test)
    need("pg_isready" in test and "-h" in test.split(),
         "db healthcheck is pg_isready over TCP (not the entrypoint's socket-only init server)")
    need(db.get("restart") == "unless-stopped", "db restart: unless-stopped")

    # tokengate's own settings: lists, so a config file over the image's config.yml.
    need(jwt.get("read_only") is True, "jwt runs with a read-only root filesystem")
    mounts = [c for c in jwt.get("configs", []) if isinstance(c, dict) and c.get("target") == "/app/config.yml"]
    need(len(mounts) == 1, "jwt mounts one config at /app/config.yml (the image's working directory)")
    source = (doc.get("configs") or {}).get(mounts[0].get("source"), {}) if mounts else {}
    # Compose refuses inline `content:` / `environment:` configs in a read_only service.
    need(set(source) == {"file"}, "that config is a `file:` (bind-mounted; read_only forbids inline content)")
    settings, settings_path = {}, os.path.join(root, str(source.get("file", "")))
    if source.get("file") and os.path.isfile(settings_path):
        settings = yaml.safe_load(open(settings_path)) or {}
    need(bool(settings), f"{source.get('file')} exists and holds settings")

    def keys(tree, prefix=""):
        for k, v in (tree or {}).items():
            yield prefix + k
            if isinstance(v, dict):
                yield from keys(v, prefix + k + ".")
    known = set(keys(yaml.safe_load(open(os.path.join(root, "config.yml")))))
    unknown = sorted(set(keys(settings)) - known)
    need(not unknown, f"every key it sets is one config.yml lists (unknown: {unknown or 'none'})")

    need(not any(k.startswith("TOKENGATE__GRPC__") for k in env) and "grpc" not in settings,
         "jwt serves gRPC on the default grpc.port 9090, which nginx's upstream tokengate_grpc names")

    login = settings.get("login") or {}
    clients = login.get("clients") or []
    web = [c for c in clients if isinstance(c, dict) and c.get("id") == "web"]
    # What `init-secrets --volumes` writes into jwt's volume.
    mounted = {f"/run/secrets/{n}" for n in ("jwt_secret", "login_client_secret", "admin_token",
                                             "redis_password", "db_password")}
    need(len(web) == 1 and web[0].get("secret_file") == "/run/secrets/login_client_secret"
         and "secret_hash" not in web[0],
         "login client `web` reads its secret from /run/secrets/login_client_secret")
    need(all(isinstance(c, dict) and c.get("secret_file", "") in mounted | {""} for c in clients),
         "every login client's secret_file is a secret jwt mounts")
    need(login.get("open") is not True and "TOKENGATE__LOGIN__OPEN" not in env, "/login is not open")
    # compose.yaml's variable sets admin.token_file; a value in this file would be
    # overridden by it (token_file) or refused beside it (token_hash).
    need("admin" not in settings, "the admin token is set in compose.yaml only (no admin: in config.compose.yml)")

    database = settings.get("database") or {}
    need(not any(k.startswith("TOKENGATE__DATABASE__") for k in env),
         "the database is set in config.compose.yml only (an environment variable would override it)")
    url = urllib.parse.urlsplit(str(database.get("url", "")))
    try:
        port = url.port
    except ValueError:
        port = -1
    need(url.scheme in ("postgres", "postgresql") and url.hostname == "db" and port in (None, 5432)
         and url.username == "tokengate" and url.password is None
         and url.path == f"/{db_env.get('POSTGRES_DB')}",
         f"database.url is postgres://tokengate@db:5432/POSTGRES_DB, no password in it "
         f"(found {database.get('url')!r})")
    need(database.get("password_file") == "/run/secrets/db_password" and database.get("password_file") in mounted,
         "database.password_file is the db_password secret jwt mounts")

    # X-Forwarded-For is believed from these: nginx's address on `edge` must be
    # among them, and nothing but nginx may reach a replica from them.
    proxies = (settings.get("server") or {}).get("trusted_proxies") or []
    try:
        nets = [ipaddress.ip_network(str(p), strict=False) for p in proxies]
    except ValueError as e:
        nets = []
        need(False, f"server.trusted_proxies parse: {e}")
    need(bool(nets) and all(n.is_private for n in nets),
         f"server.trusted_proxies lists only private networks: {proxies}")
    edge_ipam = ((doc.get("networks") or {}).get("edge") or {}).get("ipam", {}).get("config", [])
    for subnet in (c.get("subnet") for c in edge_ipam if c.get("subnet")):
        need(any(ipaddress.ip_network(subnet).subnet_of(n) for n in nets if n.version == 4),
             f"edge subnet {subnet} is within server.trusted_proxies")

    def networks(svc):
        n = svc.get("networks", ["default"])
        return set(n) if isinstance(n, (list, dict)) else set()
    on_edge = {name for name, svc in services.items() if "edge" in networks(svc)}
    need(on_edge == {"nginx", "jwt"}, f"only nginx and jwt are on `edge` (found {sorted(on_edge)})")
    need(all("ports" not in svc for name, svc in services.items() if name != "nginx"),
         "nothing but nginx publishes a port")
    need(networks(cache) == {"store"} and (doc.get("networks") or {}).get("store", {}).get("internal") is True,
         "Redis is only on the internal `store` network")
    need(networks(db) == {"store"}, "PostgreSQL is only on the internal `store` network")

    # The operators' endpoints (SPEC §11): the admin listener on `ops`, never behind nginx.
    need(env.get("TOKENGATE__ADMIN__LISTEN") == "0.0.0.0:8081",
         "jwt's admin listener (/admin/*, /metrics) is admin.listen 0.0.0.0:8081")
    need("8081" in [str(p) for p in jwt.get("expose", [])], "jwt exposes 8081 (the admin listener)")
    on_ops = {name for name, svc in services.items() if "ops" in networks(svc)}
    need(on_ops == {"jwt"} and (doc.get("networks") or {}).get("ops", {}).get("internal") is True,
         f"only jwt is on the internal `ops` network, which operators' tools join (found {sorted(on_ops)})")
    def directives(name):
        return [l.split("#", 1)[0].strip() for l in open(os.path.join(root, "nginx", name))
                if l.split("#", 1)[0].strip()]
    confs = sorted(f for f in os.listdir(os.path.join(root, "nginx")) if f.endswith(".conf"))
    replicas = sorted({m for f in confs for l in directives(f) for m in re.findall(r"\bjwt:\d+", l)})
    need(replicas == ["jwt:8080", "jwt:9090"],
         f"nginx reaches the replicas on 8080 (HTTP) and 9090 (gRPC) only, never their admin listener "
         f"(found {replicas})")

finish()
