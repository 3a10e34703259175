"""What every part of the benchmark shares: where things are, how it logs, how it breaks."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
WRK_DIR = ROOT / "benches" / "wrk"
NGINX_CONF_DIR = ROOT / "nginx"


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text} (e.g. 10s, 500ms, 1m)")
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n
