"""What the runtimes run on: CPU model and the SIMD extensions that decide int8 speed."""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

# Extensions worth reporting: VNNI decides whether u8s8 int8 GEMMs can saturate.
ISA_FLAGS = ["avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"]


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_vnni() -> bool:
    """True when the CPU has an int8 dot-product instruction (AVX512-VNNI or AVX-VNNI) or is ARM."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return True
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())


def affinity() -> list[int] | None:
    """The cores this process may run on (its CPU affinity), sorted; None where the OS does not say."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def usable_cores() -> int:
    """How many cores this process may run on (its affinity where the OS tells it, else the machine's)."""
    cores = affinity()
    return len(cores) if cores is not None else (os.cpu_count() or 1)


def cpu_description() -> dict[str, Any]:
    """CPU model, core count and relevant instruction-set extensions, for reports."""
    info: dict[str, Any] = {"machine": platform.machine(), "cores": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    info["isa"] = [f for f in ISA_FLAGS if f in flags]
    info["vnni"] = has_vnni()
    return info
