"""What the benchmarks record beside their figures: the machine, the versions and the load it ran under."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, cores, Python, torch (its version only: some benchmarks must not import it), OS, and the
    load average at the start (other work on the machine skews timings)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch,
            "os": f"{platform.system()} {platform.release()}",
            "load_average": [round(x, 2) for x in os.getloadavg()]}
