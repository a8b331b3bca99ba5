"""Benchmarks: each module prints a table and writes its results (see docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def write_result(result: dict[str, Any], out: Path, module: str, argv: list[str] | None) -> None:
    """``result`` as JSON in ``out``, with its ``meta``: the cores, the load average, and the command that made it
    (``python -m benchmarks.<module>`` with ``argv``, else the process's arguments)."""
    command = f"python -m benchmarks.{module} " + " ".join(argv or sys.argv[1:])
    result["meta"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0], "command": command}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
