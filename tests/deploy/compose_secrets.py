"""compose.secrets.yaml, the override for operators' own secret files: valid against the
Compose schema, and it names exactly the files scripts/init-secrets makes, each used by
a service. Usage: compose_secrets.py COMPOSE_SECRETS_YAML SCHEMA_JSON."""
import json, sys
import jsonschema, yaml
from checklist import finish, need

doc = yaml.safe_load(open(sys.argv[1]))
problems = list(jsonschema.Draft7Validator(json.load(open(sys.argv[2]))).iter_errors(doc))
need(not problems, f"compose.secrets.yaml is valid Compose ({[p.message for p in problems][:3]})")
names = {"jwt_secret", "redis_password", "login_client_secret", "db_password", "db_admin_password", "admin_token"}
files = {name: s.get("file") for name, s in (doc.get("secrets") or {}).items()}
need(files == {n: f"./secrets/{n}" for n in names}, f"each secret is the file init-secrets makes ({files})")
used = {n for svc in (doc.get("services") or {}).values() for n in svc.get("secrets", [])}
need(used == names, f"every secret is mounted by a service ({sorted(used)})")
finish()
