"""compose.redis-cluster.yaml, the override that puts the replicas on a Redis Cluster
(SPEC §16, docs/redis.md): valid Compose, six nodes joined by a one-shot init, and the
replicas given every node as cache.cluster.nodes with cache.url emptied.
Usage: compose_redis_cluster.py COMPOSE_REDIS_CLUSTER_YAML SCHEMA_JSON."""
import json, sys
import jsonschema, yaml
from checklist import finish, need

doc = yaml.safe_load(open(sys.argv[1]))
problems = list(jsonschema.Draft7Validator(json.load(open(sys.argv[2]))).iter_errors(doc))
need(not problems, f"compose.redis-cluster.yaml is valid Compose ({[p.message for p in problems][:3]})")
services = doc["services"]
nodes = ["cache"] + [f"cache-{i}" for i in range(2, 7)]
need(all(n in services for n in nodes), "six Redis nodes: cache, cache-2 … cache-6")
commands = [" ".join(services[n].get("command", [])) for n in nodes]
need(all("--cluster-enabled yes" in c and "--cluster-require-full-coverage no" in c for c in commands),
     "every node runs in cluster mode and serves its slots while another master is down")
need(all("~tg:*" in c and "-@dangerous" in c for c in commands),
     "on every node the replicas' user reaches tokengate's keys only, no @dangerous command")
init = " ".join(services["cache-cluster-init"]["command"])
need("--cluster create" in init and all(f"{n}:6379" in init for n in nodes)
     and "--cluster-replicas 1" in init, "the init joins all six, one replica per master")
env = services["jwt"]["environment"]
need(env.get("TOKENGATE__CACHE__URL") == "", "cache.url is emptied (exactly one of url, sentinel, cluster)")
seeds = env.get("TOKENGATE__CACHE__CLUSTER__NODES", "").split(",")
need(sorted(seeds) == sorted(f"{n}:6379" for n in nodes), f"every node is a seed ({seeds})")
need(services["jwt"]["depends_on"]["cache-cluster-init"]["condition"] == "service_completed_successfully",
     "the replicas start once the cluster is formed")
finish()
