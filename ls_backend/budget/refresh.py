"""After each retraining: recompute the project's budget status, keep it for /report, summarise it in Label Studio."""

from __future__ import annotations

import logging
from typing import Any

from converters import studio

from ..config import Settings
from ..labels import TaskLabel
from .render import description_summary, with_failure, with_summary
from .status import BudgetStatus, collect_status, save_status

logger = logging.getLogger(__name__)

PLAIN_ORDER = "Sequential sampling"  # Label Studio's order when no ranking is followed


def publish_summary(client: Any, status: BudgetStatus) -> None:
    """Replace the budget block of the Label Studio project's description (the manager's own text stays).

    Once the budget is spent the project also leaves "Uncertainty sampling", so the labeling stream no longer
    serves the backend's picks first (the next ranking pushed, e.g. after the budget is raised, restores it).
    """
    project = client.projects.get(id=int(status.project))
    stop = {"sampling": PLAIN_ORDER} if status.is_spent else {}
    description = with_summary(project.description, description_summary(status))
    client.projects.update(id=int(status.project), description=description, **stop)


def refresh_report(
    settings: Settings, client: Any, project: object, labels: list[TaskLabel] | None = None
) -> BudgetStatus:
    """Compute, save and publish the status (``labels``: those the retraining just read, to read them once)."""
    status = collect_status(settings, client, project, labels)
    save_status(settings.model_dir, status)
    publish_summary(client, status)
    return status


def after_retraining(settings: Settings, client: Any, project: object, labels: list[TaskLabel]) -> None:
    """The retraining's last step; a failure here is logged and never fails the retraining."""
    try:
        refresh_report(settings, client, project, labels)
    except Exception:
        logger.exception("project %s: refreshing the budget report failed", project)


def publish_failure(settings: Settings, client: Any, project: int | str, line: str | None) -> None:
    """Show (or, with None, remove) the failed-retraining notice in the project's description; best effort, since
    the failure may be that Label Studio cannot be reached."""
    try:
        client = client or studio.connect(settings.label_studio_url, settings.label_studio_api_key)
        description = client.projects.get(id=int(project)).description
        client.projects.update(id=int(project), description=with_failure(description, line))
    except Exception as err:  # noqa: BLE001 - the notice must never hide the failure it reports
        logger.warning("project %s: could not write the retraining notice into Label Studio: %s", project, err)
