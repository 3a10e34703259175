"""tokengate's benchmark (benches/bench.py), one module per thing measured.

  common       paths, logging, BenchError, durations
  clients      Redis over RESP, HTTP with http.client
  cluster      scripts/cluster's native cluster; an extra nginx front, an extra replica
  measure      wrk runs, CPU per process group, RSS, percentiles
  idle_flood   the idle HTTP/2 connections of ping_grpc_idle
"""
