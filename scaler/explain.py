"""`pd-scaler explain NAMESPACE/NAME`: asks a running pd-scaler why a ScaledObject gets the answer it gets."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT = 5.0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    cmd = commands.add_parser(
        "explain", help="ask a running pd-scaler for a ScaledObject's answer, why, and its recent decisions"
    )
    cmd.add_argument("scaledobject", metavar="NAMESPACE/NAME", type=_namespaced, help="the ScaledObject")
    return cmd


def _namespaced(text: str) -> tuple[str, str]:
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAMESPACE/NAME")
    return namespace, name


def _clean(text: object) -> str:
    """Names and messages come from callers and sources: no control characters reach the terminal."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _num(x: object) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) else "-"


def _decision(d: dict[str, Any]) -> str:
    if "error" in d:
        return f"error {d['code']}: {d['error']}"
    state = "active" if d["active"] else "inactive"
    return f"value {_num(d['value'])} / target {_num(d['target'])} -> {d['replicas']} replicas, {state}: {d['reason']}"


def lines(so: dict[str, Any]) -> list[str]:
    """The report, one line each: the current answer, why, then the recent decisions, newest first."""
    name = f"{so['namespace']}/{so['name']}"
    answered = so["answered"]
    out = [f"{name}: {_decision(answered)} ({answered['age_s']:.0f}s ago)" if answered else f"{name}: no answer yet"]
    out.append(f"  role {so['role'] or '-'}, policy {so['policy'] or '-'}, metric {so['metric'] or '-'}")
    error = so["last_error"]
    out.append(
        f"  last error: {error['code']}: {error['error']} ({error['at']}, {error['age_s']:.0f}s ago)"
        if error
        else "  last error: none"
    )
    out.append("recent decisions, newest first:")
    out += [f"  {d['at']}  {_decision(d)}" for d in so["decisions"]]
    return [_clean(line) for line in out]


def run(args: argparse.Namespace) -> int:
    namespace, name = args.scaledobject
    base = args.url.rstrip("/")
    url = f"{base}/status/{urllib.parse.quote(namespace, safe='')}/{urllib.parse.quote(name, safe='')}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            so = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            print(f"pd-scaler explain: {_clean(namespace)}/{_clean(name)}: unknown to the scaler at {base} "
                  "(KEDA has not asked about it lately)", file=sys.stderr)  # fmt: skip
        else:
            print(f"pd-scaler explain: {base} answered HTTP {exc.code}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"pd-scaler explain: cannot reach a pd-scaler at {base}: {_clean(reason)}", file=sys.stderr)
        return 1
    print("\n".join(lines(so)))
    return 0
