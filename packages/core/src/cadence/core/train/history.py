"""The training log a run leaves on disk: ``history.jsonl`` in its output directory.

Every training loop appends what it logs (train loss and the other logged values at each
``log_every``, evaluation metrics when they are computed) as one JSON object per line,
``{"step": 200, "train/loss": 3.1, ...}`` or ``{"step": 200, "eval/loss": 3.4}``, so that a
report can draw the curves after the run (``cadence eval --report``) without a tracker.

The file is appended to, not rewritten: a line is one ``write`` of a whole object, and
:func:`read_history` skips a torn last line (a run killed mid-write). A resumed run appends
again from its checkpoint's step; a step logged twice keeps its last values.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["HISTORY_FILE", "append_history", "read_history"]

HISTORY_FILE = "history.jsonl"


def append_history(path: str | os.PathLike, step: int, values: Mapping[str, Any]) -> None:
    """Append one record (``step`` and the finite numbers of ``values``) to ``path``."""
    row: dict[str, float | int] = {"step": int(step)}
    for key, value in values.items():
        number = float(value)
        if math.isfinite(number):  # JSON has no NaN; a missing point reads better than a fake
            row[key] = number
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """The records of ``path`` merged by step, in step order (``[]`` when it does not exist).

    Lines that are not a JSON object with an integer ``step`` (a torn last line) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            continue
        values = {
            k: float(v)
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        by_step.setdefault(row["step"], {}).update(values)
    return [{"step": float(step), **by_step[step]} for step in sorted(by_step)]
