"""Idle connections held on a port, as an attacker holds them, for the bench's
ping_grpc_idle case (SPEC §11: one listener cannot starve another).

Opens N TCP connections to the replica's gRPC port, each sending the HTTP/2 client
preface and an empty SETTINGS frame — so the handshake timer (grpc.handshake_timeout)
does not close them: they sit as idle HTTP/2 connections, the kind that lasts longest
(grpc.idle_timeout) — and holds them while the case runs. Raises this process's own
RLIMIT_NOFILE as far as N needs; within a hard limit too low, opens fewer and says so.
"""

from __future__ import annotations

import resource
import socket
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
# Descriptors this process keeps for everything else (wrk runs as a child with its own).
SPARE_FDS = 256


class IdleFlood:
    def __init__(self, host: str, port: int, count: int):
        self.addr = (host, port)
        self.wanted = count
        self.socks: list[socket.socket] = []
        self.seconds = 0.0
        self.note = ""

    def __enter__(self) -> "IdleFlood":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = self.wanted + SPARE_FDS
        if soft != resource.RLIM_INFINITY and soft < want:
            to = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (to, hard))
            soft = to
        count = self.wanted
        if soft != resource.RLIM_INFINITY and soft - SPARE_FDS < count:
            count = max(soft - SPARE_FDS, 0)
            self.note = f"opened {count}, not {self.wanted}: this process's open-file limit is {soft}"
        started = time.monotonic()
        try:
            for _ in range(count):
                s = socket.create_connection(self.addr, timeout=5)
                self.socks.append(s)
                try:
                    s.sendall(PREFACE)
                except OSError:
                    pass  # already closed by the server (evicted): it counts as such
                s.setblocking(False)
        except BaseException:
            self.close()
            raise
        self.seconds = time.monotonic() - started
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def open_at_server(self) -> int:
        """How many the server still holds: nothing to read but more to come."""
        still = 0
        for s in self.socks:
            try:
                while s.recv(65536):
                    pass  # its SETTINGS and the like
            except BlockingIOError:
                still += 1
            except OSError:
                pass  # reset: closed
        return still

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []
