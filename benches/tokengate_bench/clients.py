"""Small clients the measurements speak through: Redis over RESP (INFO,
commandstats, CONFIG, MEMORY) and HTTP with http.client."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import time

from .common import BenchError


class Redis:
    """A minimal RESP client: enough for INFO, CONFIG, MEMORY and FLUSHALL."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def cmd(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BenchError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise BenchError(f"redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise BenchError(f"redis: unexpected reply {line!r}")

    def info(self, section: str) -> dict[str, str]:
        text = self.cmd("INFO", *section.split()).decode()
        out = {}
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v
        return out

    def commandstats(self, info: dict[str, str] | None = None) -> dict[str, int]:
        calls = {}
        for k, v in (info or self.info("commandstats")).items():
            m = re.search(r"calls=(\d+)", v)
            if k.startswith("cmdstat_") and m:
                calls[k[len("cmdstat_") :]] = int(m.group(1))
        return calls

    def calls_and_writes(self) -> tuple[dict[str, int], int]:
        """Calls per command and total_writes_processed from one INFO, so that
        nothing Redis does in between is counted in one and not the other."""
        info = self.info("stats commandstats")
        return self.commandstats(info), int(info["total_writes_processed"])


class ClusterRedis:
    """A Redis Cluster's masters as one Redis, for what the harness asks:
    commands counted over every master, and which master serves a key."""

    def __init__(self, nodes: list[str]):
        self.masters: dict[int, Redis] = {}
        for node in nodes:
            port = int(node.rsplit(":", 1)[1])
            r = Redis(port)
            if r.cmd("ROLE")[0] in (b"master", "master"):
                self.masters[port] = r
            else:
                r.close()

    def close(self) -> None:
        for r in self.masters.values():
            r.close()

    def commandstats(self) -> dict[str, int]:
        """Calls per command, summed over the masters."""
        total: dict[str, int] = {}
        for r in self.masters.values():
            for cmd, calls in r.commandstats().items():
                total[cmd] = total.get(cmd, 0) + calls
        return total

    def master_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot."""
        any_master = next(iter(self.masters.values()))
        slot = any_master.cmd("CLUSTER", "KEYSLOT", key)
        for first, last, node, *_ in any_master.cmd("CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return int(node[1])
        raise BenchError(f"no master serves slot {slot}")


def http_request(port: int, method: str, path: str, headers=None, body=None, conn=None):
    """One request; returns (status, body, connection) so callers can keep it alive."""
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    hdrs = dict(headers or {})
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    return resp.status, resp.read(), conn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, proc: subprocess.Popen | None, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"process {proc.args[0]} exited with {proc.returncode} on start")
        try:
            status, _, conn = http_request(port, "GET", path)
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"nothing answered 200 on 127.0.0.1:{port}{path} within {within}s")

