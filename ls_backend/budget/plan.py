"""A project's label budget: how many labels the patient gets, per clinician optionally, and the target quality.

Stored as ``MODEL_DIR/<project>/budget.json`` (written atomically); what is not set there comes from the
environment defaults (``LABEL_BUDGET``, ``TARGET_AUPRC`` in :class:`ls_backend.config.Settings`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..project_state import project_key, write_json_atomic

BUDGET_FILE = "budget.json"


@dataclass(frozen=True)
class Budget:
    """``labels``: annotations the project may spend (None: no budget); ``clinicians``: email -> labels."""

    labels: int | None = None
    clinicians: dict[str, int] = field(default_factory=dict)
    target_score: float = 0.8

    def __post_init__(self) -> None:
        if self.labels is not None:
            positive_count(self.labels, "the label budget")
        for name, count in self.clinicians.items():
            positive_count(count, f"the budget of {name}")
        if not 0 < self.target_score <= 1:
            raise ValueError(f"the target quality must be in (0, 1], got {self.target_score!r}")


def positive_count(value: object, what: str) -> int:
    """``value`` as a positive whole number, else a ValueError naming ``what`` and the value."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0 or number != int(number):
        raise ValueError(f"{what} must be a positive whole number of labels, got {value!r}")
    return int(number)


def parse_clinician(text: str) -> tuple[str, int]:
    """``"a@x.org=200"`` -> ``("a@x.org", 200)``."""
    name, sep, count = text.rpartition("=")
    if not sep or not name.strip():
        raise ValueError(f"a clinician's budget is EMAIL=LABELS, got {text!r}")
    return name.strip(), positive_count(count, f"the budget of {name.strip()}")


def budget_path(model_dir: Path, project: object) -> Path:
    return Path(model_dir) / project_key(project) / BUDGET_FILE


def load_budget(settings: Settings, project: object) -> Budget:
    """The project's budget, with the environment's defaults for what it does not set."""
    try:
        stored = json.loads(budget_path(settings.model_dir, project).read_text())
    except FileNotFoundError:
        stored = {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{budget_path(settings.model_dir, project)} is not valid JSON: {err}") from None
    return Budget(
        labels=stored.get("labels") or settings.label_budget or None,
        clinicians=dict(stored.get("clinicians") or {}),
        target_score=float(stored.get("target_score") or settings.target_auprc),
    )


def save_budget(model_dir: Path, project: object, budget: Budget) -> Path:
    path = budget_path(model_dir, project)
    content = {"labels": budget.labels, "clinicians": budget.clinicians, "target_score": budget.target_score}
    write_json_atomic(path, content)
    return path
