"""tokengate's benchmark (benches/bench.py), one module per thing measured.

  common       paths, logging, BenchError, durations
  options      the command line, and what --smoke makes of it
  clients      Redis over RESP, HTTP with http.client
  cluster      scripts/cluster's native cluster; an extra nginx front, an extra replica
  measure      wrk runs, CPU per process group, RSS, percentiles
  harness      Bench: the run's state, one measured case, session pools
  run          the order of the run: every cluster in turn, then the report
  http_cases   direct cases: ping, authenticate (session, API token), login,
               refresh, logout; Redis costs per operation, memory per session
  nginx_cases  behind nginx: ceilings, the shipped config, Unix socket, 3 replicas
  browser_cases the cookie gate (/oauth2/auth) beside the Bearer gate, each on an
               extra nginx built alike; a browser session signed in by the form
  grpc_cases   AuthApi/Refresh direct and through nginx (examples/grpc_load.rs)
  cached_cases the local cache (SPEC §10): load cases, Redis per authenticate,
               invalidation delay, RSS with many sessions cached
  flood_cases  OAuth token floods, the login-client flood, idle gRPC connections
  idle_flood   the idle HTTP/2 connections of ping_grpc_idle
  user_cases   register and password_login (argon2-bound), authenticate with users
  report       ratios, targets, the machine: report.json
  render       the report as text: report.txt and what is printed
"""
