"""Deployment settings, read once from the environment (the ecosystem's names where one exists)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Every setting of the backend, with its environment variable in the field's metadata."""

    label_studio_url: str = "http://localhost:8080"  # LABEL_STUDIO_URL
    label_studio_api_key: str = ""  # LABEL_STUDIO_API_KEY: token the backend uses to read labels, write rankings
    model_dir: Path = Path("models")  # MODEL_DIR: checkpoints, rankings, queued retrainings (back it up)
    window_store_dir: Path = Path("window_stores")  # WINDOW_STORE_DIR: where converters wrote the window stores
    basic_auth_user: str = ""  # BASIC_AUTH_USER: with BASIC_AUTH_PASS, required on every endpoint
    basic_auth_pass: str = ""  # BASIC_AUTH_PASS
    webhook_secret: str = ""  # WEBHOOK_SECRET: accepted on /webhook as header X-Webhook-Secret
    redis_url: str = ""  # REDIS_URL: run retrainings through RQ workers instead of in-process
    log_level: str = "INFO"  # LOG_LEVEL
    retrain_debounce_seconds: float = 5.0  # RETRAIN_DEBOUNCE_SECONDS: a burst of annotations is one retraining
    max_request_mb: float = 64.0  # MAX_REQUEST_MB: webhooks carry whole tasks (inline time series)
    label_budget: int = 0  # LABEL_BUDGET: labels per project unless set with python -m ls_backend.budget; 0: none
    target_auprc: float = 0.8  # TARGET_AUPRC: the quality the budget report estimates the labels needed for
    pretrain_after_import: bool = True  # PRETRAIN_AFTER_IMPORT: pretrain a project's encoder after its cold start

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``environ`` (the process environment by default); bad values name the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is None or raw == "":
                continue
            kind: type = type(field.default)
            try:
                values[field.name] = parse_bool(raw) if kind is bool else kind(raw)
            except ValueError:
                expected = "1/0, true/false or yes/no" if kind is bool else f"a {kind.__name__}"
                raise ValueError(f"{field.name.upper()}={raw!r}: expected {expected}") from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise ValueError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together")
        if self.retrain_debounce_seconds < 0:
            raise ValueError(f"RETRAIN_DEBOUNCE_SECONDS must be >= 0, got {self.retrain_debounce_seconds}")
        if self.max_request_mb <= 0:
            raise ValueError(f"MAX_REQUEST_MB must be positive, got {self.max_request_mb}")
        if self.label_budget < 0:
            raise ValueError(f"LABEL_BUDGET must be a whole number of labels >= 0 (0: none), got {self.label_budget}")
        if not 0 < self.target_auprc <= 1:
            raise ValueError(f"TARGET_AUPRC must be in (0, 1], got {self.target_auprc}")

    def problems(self) -> list[str]:
        """Settings the backend starts without but cannot do its whole job without (said at start-up and by
        /health)."""
        found = []
        if not self.label_studio_api_key:
            found.append(
                "LABEL_STUDIO_API_KEY is not set: the backend can pre-annotate, but cannot read labels or write "
                "rankings, so every retraining fails (set it to a Label Studio access token)"
            )
        return found

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_user)


def parse_bool(raw: str) -> bool:
    """``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (any case); ValueError otherwise."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
