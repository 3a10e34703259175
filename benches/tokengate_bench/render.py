"""The report as text: the table, CPU per request, each group's own section,
Redis costs and memory, notes, targets and ratios (target/bench/report.txt)."""

from __future__ import annotations

from .browser_cases import BROWSER_EXPLAINED
from .cached_cases import CACHED_EXPLAINED, INVALIDATION_TRIAL_S
from .flood_cases import FLOOD_EXPLAINED, LOGIN_FLOOD_CASES, LOGIN_FLOOD_EXPLAINED, OAUTH_CASES
from .user_cases import USER_CASES, USERS_EXPLAINED


def render_text(rep: dict) -> str:
    s = rep["settings"]
    m = rep["machine"]
    lines = [
        f"tokengate benchmark  {rep['when']}  commit {m['commit']}  ({'smoke' if s['smoke'] else 'full'} run, "
        f"{s['profile']} build)",
        f"machine: {m['cores']} cores, {m['cpu']}, {m['memory_gb']} GB, {m['os']}",
        f"load: wrk -t{s['wrk_threads']} -c{s['wrk_connections']}, {s['duration_s']:g}s per case "
        f"after {s['warmup_s']:g}s warm-up; nginx worker_processes {s['nginx_workers']}; "
        f"everything on loopback, sharing the cores",
        "",
        f"{'case':30} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'non-2xx':>7}"
        f"   cores: tokengate redis nginx wrk kernel other",
    ]
    for r in rep["cases"]:
        lat, c = r["latency_ms"], r["cpu_cores"]
        bad = r["non2xx"] + r["socket_errors"]
        lines.append(
            f"{r['case']:30} {r['rps']:>9.0f} {lat['p50']:>7.2f} {lat['p99']:>7.2f} {lat['p999']:>8.2f} "
            f"{bad:>7}{' !!' if bad else '   '}        "
            f"{c.get('tokengate', 0):>9.2f} {c.get('redis', 0):>5.2f} {c.get('nginx', 0):>5.2f} "
            f"{c.get('wrk', 0):>3.2f} {c.get('kernel', 0):>6.2f} {c.get('other', 0):>5.2f}"
        )
    lines.append("")
    lines.append("CPU per request, µs (cores used / req/s; steadier than req/s when the machine is busy):")
    lines.append(f"  {'case':30} {'tokengate':>9} {'redis':>6} {'nginx':>6} {'wrk':>5}")
    for r in rep["cases"]:
        # None: the case completed no request in its time (a busy machine, a smoke run).
        u = {k: "-" if v is None else f"{v:.1f}" for k, v in r["cpu_us_per_request"].items()}
        lines.append(f"  {r['case']:30} {u['tokengate']:>9} {u['redis']:>6} {u['nginx']:>6} {u['wrk']:>5}")
    lines.append("")
    by = {r["case"]: r for r in rep["cases"]}
    for section in (_ping_grpc_idle, _browser, _redis_cluster, _oauth_floods, _login_floods,
                    _users, _local_cache, _redis_and_rss, _targets_and_ratios):
        lines.extend(section(rep, by))
    return "\n".join(lines) + "\n"


def _ping_grpc_idle(rep: dict, by: dict) -> list[str]:
    """/ping beside ping_grpc_idle."""
    lines: list[str] = []
    if "ping_grpc_idle" in by:
        r, g = by["ping_grpc_idle"], by["ping_grpc_idle"]["grpc_idle"]
        lines.append(f"/ping while {g['opened']} idle HTTP/2 connections sit on the gRPC port "
                     f"(opened in {g['seconds_to_open']:g} s; the replica holds {g['open_at_server']}, "
                     f"at most grpc.max_connections):")
        for name in ("ping", "ping_grpc_idle"):
            if name in by:
                lat = by[name]["latency_ms"]
                lines.append(f"  {name:16} {by[name]['rps']:>9.0f} req/s  p50 {lat['p50']:.2f} ms  "
                             f"p99 {lat['p99']:.2f} ms")
        lines.append("")
    return lines


def _redis_cluster(rep: dict, by: dict) -> list[str]:
    """One Redis beside a 3-master Redis Cluster: rates, CPU and scripts per
    request of /login, /refresh and /authenticate (strict), same run."""
    lines: list[str] = []
    ops = [op for op in ("login", "refresh", "authenticate")
           if f"redis1_{op}" in by and f"cluster3_{op}" in by]
    if not ops:
        return lines
    lines.append("Redis Cluster (SPEC §16): one Redis beside 3 masters + 3 replicas, one tokengate "
                 "replica, same run; Redis CPU over every node, scripts over every master:")
    lines.append(f"  {'op':14} {'req/s 1 node':>12} {'3 masters':>10} {'ratio':>6}   "
                 f"{'tokengate µs/req':>16} {'redis µs/req':>16}   scripts/req 1 node, 3 masters")

    def us(r, k):
        v = r["cpu_us_per_request"][k]
        return "-" if v is None else f"{v:.1f}"

    def scripts(r):
        calls = r.get("redis_calls_per_request") or {}
        return calls.get("evalsha", 0) + calls.get("eval", 0)

    for op in ops:
        one, three = by[f"redis1_{op}"], by[f"cluster3_{op}"]
        ratio = three["rps"] / one["rps"] if one["rps"] else 0
        lines.append(
            f"  {op:14} {one['rps']:>12.0f} {three['rps']:>10.0f} {ratio:>6.2f}   "
            f"{us(one, 'tokengate'):>7} → {us(three, 'tokengate'):>6} "
            f"{us(one, 'redis'):>7} → {us(three, 'redis'):>6}   "
            f"{scripts(one):.3f}, {scripts(three):.3f}")
    lines.append("  (on a cluster a request is still one script on its slot's master; what a login, "
                 "rotation or logout adds is the feed's batched feed.lua on the {feed} master)")
    lines.append("")
    return lines


def _browser(rep: dict, by: dict) -> list[str]:
    """The cookie gate beside the Bearer gate: rates, CPU and Redis per request."""
    lines: list[str] = []
    if "nginx_tokengate_cookie_auth" not in by:
        return lines
    lines.append("Browser sessions (SPEC §15): the cookie gate beside the Bearer gate, GET /app/ "
                 "through nginx to the strict replica, same run:")
    lines.append(f"  {'case':30} {'req/s':>9} {'p99 ms':>7}   µs/req: {'tokengate':>9} {'redis':>6} "
                 f"{'nginx':>6}   Redis calls per request")

    def us(v):
        return "-" if v is None else f"{v:.1f}"

    for name, where in (("nginx_tokengate_auth", "Bearer, the cluster's nginx"),
                        ("nginx_tokengate_bearer_auth", "Bearer, an extra nginx"),
                        ("nginx_tokengate_cookie_auth", "cookie, an extra nginx alike")):
        r = by.get(name)
        if not r:
            continue
        u = r["cpu_us_per_request"]
        # Commands under 0.001 per request are the replica's own (heartbeat
        # PINGs, the expiry sweep), not the check's.
        calls = ", ".join(f"{k} {v:g}" for k, v in sorted(
            (r.get("redis_calls_per_request") or {}).items()) if v > 0)
        lines.append(f"  {name:30} {r['rps']:>9.0f} {r['latency_ms']['p99']:>7.2f}   {'':7} "
                     f"{us(u['tokengate']):>9} {us(u['redis']):>6} {us(u['nginx']):>6}   "
                     f"{calls or '-'}  ({where})")
    br = rep.get("browser") or {}
    cpu = br.get("cpu_ratio")
    if cpu:
        rps = rep["ratios"].get("nginx_tokengate_cookie_auth / nginx_tokengate_bearer_auth")
        lines.append(f"  cookie / Bearer (same nginx): {rps} in req/s; CPU per request: "
                     + ", ".join(f"{k} {v}" for k, v in cpu.items()
                                 if k in ("tokengate", "redis", "nginx") and v is not None))
    lines.extend(wrapped(BROWSER_EXPLAINED))
    lines.append("")
    return lines


def _oauth_floods(rep: dict, by: dict) -> list[str]:
    """oauth_token alone and under each flood of wrong secrets."""
    s = rep["settings"]
    lines: list[str] = []
    if any(name in by for name in OAUTH_CASES):
        alone = by.get("oauth_token", {}).get("rps")
        lines.append("Client authentication under a flood of wrong secrets (POST /oauth/token, "
                     "client_credentials, HTTP Basic, direct to the replica; "
                     f"flood: a second wrk, -c{s['flood_connections']}):")
        lines.append(f"  {'case':31} {'honest req/s':>12} {'vs alone':>8} {'flood req/s':>11} "
                     f"{'401':>8} {'429':>8} {'503':>8} {'other':>6} {'flood p99 ms':>12} "
                     f"{'replica peak RSS MB':>19}")
        for name in OAUTH_CASES:
            if name not in by:
                continue
            r = by[name]
            vs = f"{r['rps'] / alone:.2f}" if alone and name != "oauth_token" else ""
            f = r.get("flood")
            if f:
                st, sock = f["status"], sum(f["socket_errors"].values())
                lines.append(
                    f"  {name:31} {r['rps']:>12.0f} {vs:>8} {f['rps']:>11.0f} {st['401']:>8} "
                    f"{st['429']:>8} {st['503']:>8} {st['other'] + sock:>6} {f['latency_ms']['p99']:>12.2f} "
                    f"{f.get('replica_rss_after_kb', {}).get('vm_hwm_kb', 0) / 1024:>19.1f}")
            else:
                lines.append(f"  {name:31} {r['rps']:>12.0f}   (alone)")
        lines.append("  (other: any other status, or a socket error such as a timeout)")
        lines.extend(wrapped(FLOOD_EXPLAINED))
        lines.append("")
    return lines


def _login_floods(rep: dict, by: dict) -> list[str]:
    """A login client's /login alone and flooded."""
    lines: list[str] = []
    if any(name in by for name in LOGIN_FLOOD_CASES):
        alone = by.get("login_client", {}).get("rps")
        lines.append("A login client's honest /login while another address floods its id with "
                     "wrong secrets (direct to the replica):")
        for name in LOGIN_FLOOD_CASES:
            if name not in by:
                continue
            r = by[name]
            vs = f"  {r['rps'] / alone:.2f} of alone" if alone and name != "login_client" else ""
            line = f"  {name:31} {r['rps']:>10.0f} req/s  non-2xx {r['non2xx']}{vs}"
            f = r.get("flood")
            if f:
                st = f["status"]
                line += (f"  (flood {f['rps']:.0f} req/s: 401 {st['401']}, 429 {st['429']}, "
                         f"503 {st['503']})")
            lines.append(line)
        lines.extend(wrapped(LOGIN_FLOOD_EXPLAINED))
        lines.append("")
    return lines


def _users(rep: dict, by: dict) -> list[str]:
    """The users' cases, argon2-bound."""
    s = rep["settings"]
    lines: list[str] = []
    if any(name in by for name in USER_CASES):
        a = rep.get("argon2") or {}
        params = (f"{a['algorithm']} v={a['version']} m={a['m_kib']} KiB, t={a['t']}, p={a['p']} "
                  f"(read from {a['source']})" if a else "argon2 parameters unknown")
        lines.append(f"Users, argon2-bound (direct to the replica, {s['database']} database, "
                     f"wrk -c{s['argon2_connections']} for register and password_login):")
        lines.append(f"  {params}")
        lines.append(f"  {'case':31} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'tokengate CPU µs/req':>21}")
        for name in USER_CASES:
            if name not in by:
                continue
            r = by[name]
            lines.append(f"  {name:31} {r['rps']:>9.0f} {r['latency_ms']['p50']:>7.2f} "
                         f"{r['latency_ms']['p99']:>7.2f} {r['cpu_us_per_request']['tokengate'] or 0:>21.1f}")
        if "authenticate" in by and "authenticate_with_users" in by and by["authenticate"]["rps"]:
            r0, r1 = by["authenticate"], by["authenticate_with_users"]
            lines.append(f"  authenticate_with_users / authenticate: {r1['rps'] / r0['rps']:.2f} in req/s, "
                         f"{(r1['cpu_us_per_request']['tokengate'] or 0) / (r0['cpu_us_per_request']['tokengate'] or 1):.2f} "
                         f"in tokengate CPU per request")
        use = rep.get("database_use") or {}
        if use.get("setup_users"):
            lines.append(f"  setup of password_login: {use['setup_users']} users registered in {use['setup_s']} s")
        if "users_in_database" in use:
            tx = use.get("transactions_during_authenticate")
            lines.append(
                f"  during authenticate_with_users: {use['users_in_database']} users in the database; "
                + (f"{tx} database transactions for {use['authenticate_requests']} requests, none per request "
                   f"(the replica's own polling: events.relay_interval, database.clients_refresh; "
                   f"PostgreSQL also reports earlier cases' counts late)" if tx is not None
                   else "database transactions not counted (SQLite: no server to ask; --postgres counts them)"))
        lines.extend(wrapped(USERS_EXPLAINED))
        lines.append("")
    return lines


def _local_cache(rep: dict, by: dict) -> list[str]:
    """The cached cluster beside strict mode: rates, Redis per authenticate, invalidation, RSS."""
    lines: list[str] = []
    lc = rep.get("local_cache") or {}
    pairs = [("authenticate", "authenticate_cached"),
             ("nginx_tokengate_auth", "nginx_tokengate_auth_cached"),
             ("nginx_tokengate_auth_uds", "nginx_tokengate_auth_uds_cached")]
    if lc or any(c in by for _, c in pairs):
        lines.append("Local cache (auth.local_cache on, SPEC §10) beside strict mode (off), same run:")
        lines.append(f"  {'case':26} {'strict req/s':>12} {'cached req/s':>12} {'ratio':>6}   "
                     f"µs/req strict -> cached: {'tokengate':>15} {'redis':>13} {'nginx':>13}")

        def us(row, k):
            v = row["cpu_us_per_request"][k] if row else None
            return f"{v:.1f}" if v is not None else "-"

        for strict, cached in pairs:
            a, b = by.get(strict), by.get(cached)
            if not b:
                continue
            ratio = f"{b['rps'] / a['rps']:.2f}" if a and a["rps"] else "-"
            lines.append(
                f"  {strict:26} {a['rps'] if a else 0:>12.0f} {b['rps']:>12.0f} {ratio:>6}   "
                f"{'':24}{us(a, 'tokengate') + ' -> ' + us(b, 'tokengate'):>15} "
                f"{us(a, 'redis') + ' -> ' + us(b, 'redis'):>13} "
                f"{us(a, 'nginx') + ' -> ' + us(b, 'nginx'):>13}")
        cost = lc.get("cost")
        if cost:
            by_cmd = ", ".join(f"{k} {v}" for k, v in cost["by_command"].items()) or "none"
            lines.append(f"  Redis per cached authenticate: {cost['commands']:.4f} commands, "
                         f"{cost['round_trips']:.4f} round trips ({cost['requests']} sequential requests "
                         f"over {cost['sessions']} sessions after one look-up each; commands: {by_cmd}; "
                         f"{cost['pings_left_out']} heartbeat PINGs left out)")
            t = lc.get("cost_touch_1s")
            if t:
                by_cmd = ", ".join(f"{k} {v}" for k, v in t["by_command"].items()) or "none"
                lines.append(f"    with auth.touch_interval 1s (replica 2, one session, {t['requests']} requests "
                             f"in {t['elapsed_s']} s): {t['commands']:.5f} commands, {t['evalsha']:.5f} "
                             f"EVALSHA per authenticate (commands: {by_cmd})")
            for case, v in cost.get("load_runs", {}).items():
                lines.append(f"    in the {case} load run: {v['commands']} commands for {v['requests']} "
                             f"requests = {v['per_request']:.5f} per request (PING and INFO left out)")
        inv = lc.get("invalidation")
        if inv:
            lines.append(f"  Invalidation delay (logout on replica 1 -> first 401 on replica 0), "
                         f"{inv['trials']} trials: p50 {inv['p50_ms']:.2f} ms, p99 {inv['p99_ms']:.2f} ms, "
                         f"max {inv['max_ms']:.2f} ms; polls per trial p50 {inv['polls_p50']}, max "
                         f"{inv['polls_max']}; refused at the first poll in {inv['refused_at_first_poll']}; "
                         f"still accepted after {INVALIDATION_TRIAL_S:g}s: {inv['stale_after_bound']}")
            cmds = ", ".join(f"{k} {v:g}" for k, v in inv["redis_commands_per_trial"].items())
            lines.append(f"    Redis commands per trial (login, two authenticates, logout, the polls): {cmds}")
        rss = lc.get("rss")
        if rss:
            lines.append(f"  Replica 0 holding {rss['sessions']} more cached sessions: VmRSS "
                         f"{rss['vm_rss_kb_before'] / 1024:.1f} -> {rss['vm_rss_kb_after'] / 1024:.1f} MB "
                         f"(+{rss['delta_mb']:.1f} MB, {rss['bytes_per_entry']:.0f} B per entry; VmHWM "
                         f"{rss['vm_hwm_kb_after'] / 1024:.1f} MB); filled in {rss['fill_s']} s; "
                         f"{rss['sample']} of them asked again: {rss['sample_redis_commands']} Redis commands")
        lines.extend(wrapped(CACHED_EXPLAINED))
        lines.append("")
    return lines


def _redis_and_rss(rep: dict, by: dict) -> list[str]:
    """Redis per operation and per session, the replicas' peak RSS, the notes."""
    lines: list[str] = []
    costs = rep["redis_costs"]
    if costs:
        lines.append("Redis per operation (sequential run, INFO deltas):")
        for op, cst in costs.items():
            cmds = ", ".join(f"{k} {v:g}" for k, v in cst["commands"].items())
            lines.append(f"  {op:28} {cst['round_trips']:g} round trip(s); commands: {cmds}")
    mem = rep["redis_memory"]
    if mem:
        lines.append(
            f"Redis memory: {mem['bytes_per_session']:g} B per live session "
            f"({mem['sessions']} sessions, each with its user's index: "
            f"{mem.get('user_index_keys', 0)} index keys; used_memory {mem['used_memory_before']} -> "
            f"{mem['used_memory_after']}); MEMORY USAGE of one session key: "
            f"{mem['memory_usage_one_key']} B ({mem['encoding_one_key']}, {mem['fields_one_key']} fields)")
    if rep["replica_rss"]:
        rss = ", ".join(f"{k} {v['vm_hwm_kb'] / 1024:.1f} MB" for k, v in rep["replica_rss"].items())
        lines.append(f"Replica peak RSS (VmHWM): {rss}")
    for n in rep["notes"]:
        lines.append(f"note: {n}")
    return lines


def _targets_and_ratios(rep: dict, by: dict) -> list[str]:
    """Every target, met or not, and every ratio."""
    lines: list[str] = []
    lines.append("")
    lines.append("Targets:")
    for t in rep["targets"]:
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"  {t['target']:64} {str(t['value']):>10}  {mark}")
    lines.append("")
    lines.append("Ratios:")
    for k, v in rep["ratios"].items():
        lines.append(f"  {k:48} {v if v is not None else 'n/a'}")
    return lines



def wrapped(text: str, indent: str = "  ", width: int = 96) -> list[str]:
    out, line = [], indent
    for w in text.split():
        if len(line) + len(w) > width:
            out.append(line.rstrip())
            line = indent
        line += w + " "
    out.append(line.rstrip())
    return out
