"""``python -m ls_backend.budget``: set a project's label budget, or print its report and write it as a PNG.

Settings come from the environment like the backend's (``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``,
``MODEL_DIR``, ``LABEL_BUDGET``, ``TARGET_AUPRC``). Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from label_studio_sdk.core.api_error import ApiError
from redis.exceptions import RedisError

from converters import studio

from ..cli import OneLineParser
from ..config import Settings
from ..jobs import RetrainQueue, rq_dispatch
from ..project_state import project_key
from .plan import Budget, load_budget, parse_clinician, positive_count, save_budget
from .plots import png_bytes
from .refresh import refresh_report
from .render import assessment_of, text_table


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m ls_backend.budget", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    setter = commands.add_parser("set", help="set the label budget of a project (a patient)")
    setter.add_argument("--project", required=True, help="Label Studio project id")
    setter.add_argument("--labels", required=True, help="labels the project may spend (a positive whole number)")
    setter.add_argument(
        "--clinician", action="append", default=[], metavar="EMAIL=LABELS", help="a clinician's own budget (repeatable)"
    )
    setter.add_argument("--target", type=float, help="target model quality, AUPRC in (0, 1] (default: TARGET_AUPRC)")
    report = commands.add_parser("report", help="print the budget report and write it as a PNG")
    report.add_argument("--project", required=True, help="Label Studio project id")
    report.add_argument("--png", type=Path, help="where to write the figure (default: budget_report_<project>.png)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        key = project_key(args.project)
        budget = new_budget(settings, key, args) if args.command == "set" else None  # checked before connecting
        client = studio.connect(settings.label_studio_url, settings.label_studio_api_key)
        _check_project(client, key, settings)
        return run_set(settings, key, budget) if budget else run_report(settings, client, key, args.png)
    except (UsageError, ValueError, studio.StudioError) as err:
        print(f"python -m ls_backend.budget: error: {err}", file=sys.stderr)
        return 2


def _check_project(client: Any, key: str, settings: Settings) -> None:
    try:
        client.projects.get(id=int(key))
    except ApiError as err:
        if err.status_code == 404:
            raise UsageError(f"Label Studio at {settings.label_studio_url} has no project {key}") from None
        raise


def new_budget(settings: Settings, key: str, args: argparse.Namespace) -> Budget:
    """The budget the ``set`` command asks for; clinicians and target not given are kept."""
    current = load_budget(settings, key)
    return Budget(
        labels=positive_count(args.labels, "--labels"),
        clinicians=dict(parse_clinician(text) for text in args.clinician) or current.clinicians,
        target_score=current.target_score if args.target is None else args.target,
    )


def run_set(settings: Settings, key: str, budget: Budget) -> int:
    path = save_budget(settings.model_dir, key, budget)
    request_reranking(settings, key)
    print(
        f"project {key}: budget {budget.labels} labels, target quality {budget.target_score:.2f}"
        + "".join(f", {name} {n}" for name, n in budget.clinicians.items())
        + f" (saved in {path})"
    )
    return 0


def request_reranking(settings: Settings, key: str) -> None:
    """Queue a retraining (and so a re-ranking under the new budget) as the webhook does: the marker in MODEL_DIR,
    picked up by the backend's worker thread, and with ``REDIS_URL`` also a job for the RQ workers."""
    try:
        dispatch = rq_dispatch(settings.redis_url)
        queue = RetrainQueue(settings.model_dir, job=lambda _: None, debounce_seconds=settings.retrain_debounce_seconds,
                             dispatch=dispatch)  # fmt: skip
        queue.request(key, "BUDGET_SET")
    except RedisError as err:
        raise UsageError(
            f"the budget is saved, but the re-ranking could not be queued in Redis at {settings.redis_url} ({err}); "
            "a worker queues it when it next starts"
        ) from None


def run_report(settings: Settings, client: Any, key: str, png: Path | None) -> int:
    status = refresh_report(settings, client, key)
    if status.spent == 0:
        raise UsageError(f"project {key} ({status.title}) has no labels yet: nothing to report")
    png = png or Path(f"budget_report_{key}.png")
    png.write_bytes(png_bytes(status, assessment_of(status)))
    print(text_table(status))
    print(f"\nFigure written to {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
