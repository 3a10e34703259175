"""compose.events.yaml, the override that points the events at the operator's own Kafka
and webhook endpoint: valid Compose, and what it sets is what tokengate reads
(events.kafka.brokers / topic, events.webhooks as JSON naming the mounted secret).
Usage: compose_events.py COMPOSE_EVENTS_YAML SCHEMA_JSON."""
import json, os, re, sys
import jsonschema, yaml
from checklist import finish, need

text = open(sys.argv[1]).read()
doc = yaml.safe_load(text)
problems = list(jsonschema.Draft7Validator(json.load(open(sys.argv[2]))).iter_errors(doc))
need(not problems, f"compose.events.yaml is valid Compose ({[p.message for p in problems][:3]})")
jwt = doc["services"]["jwt"]
env = jwt["environment"]
need(env.get("TOKENGATE__EVENTS__KAFKA__BROKERS", "").startswith("${KAFKA_BROKERS:?"),
     "the brokers come from KAFKA_BROKERS, required")
# What Compose hands the replica once the variables are set.
hooks = re.sub(r"\$\{WEBHOOK_URL:\?[^}]*\}", "https://hooks.example.com/tg", env["TOKENGATE__EVENTS__WEBHOOKS"])
parsed = json.loads(hooks)
need(isinstance(parsed, list) and parsed[0]["secret_file"] == "/run/secrets/webhook_secret",
     f"events.webhooks is a JSON list naming the mounted secret ({parsed})")
need(jwt.get("secrets") == ["webhook_secret"] and doc["secrets"]["webhook_secret"]["file"] == "./secrets/webhook_secret",
     "the webhook secret is a file in secrets/ mounted into the replicas")
need("events" in jwt.get("networks", []) and not doc["networks"]["events"].get("internal"),
     "the replicas reach out over a network of their own that is not internal")
finish()
