"""A report row's verdict: passed, failed, or not validated here (a runtime this machine cannot run)."""
from __future__ import annotations

from typing import Any

STATUSES = ("failed", "not validated", "passed")  # the order reports list them in


def status_of(variant: dict[str, Any]) -> str:
    """"passed", "failed" or "not validated" (reports older than the status field: from ``passed``)."""
    return variant.get("status") or ("passed" if variant["passed"] else "failed")


def status_rank(variant: dict[str, Any]) -> int:
    """Sort key: failures first, then not validated, then passed."""
    return STATUSES.index(status_of(variant))
