"""What every deployment check prints: one `ok`/`FAIL` line per promise, and an exit
status that says whether any failed (scripts/check-deploy counts the files, not lines)."""
import sys

errors: list[str] = []


def need(cond, what: str) -> None:
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        errors.append(what)


def finish() -> None:
    sys.exit(1 if errors else 0)
