"""Label budget tracking for project managers: what was spent, what it bought, when to stop.

``python -m ls_backend.budget`` sets budgets and prints reports; ``/report/<project>`` (page.py) shows them in a
browser; after each retraining the summary is written into the Label Studio project's description (refresh.py),
and once a project's budget is spent its ranking is pushed as ``<version>-budget-spent`` (status.py).
"""

from .curve import Assessment, LearningCurve, assess, fit_learning_curve
from .plan import Budget, load_budget, save_budget
from .refresh import after_retraining, publish_failure, refresh_report
from .status import SPENT_SUFFIX, BudgetStatus, compute_status, marked_version, ranking_version

__all__ = [
    "SPENT_SUFFIX",
    "Assessment",
    "Budget",
    "BudgetStatus",
    "LearningCurve",
    "after_retraining",
    "assess",
    "compute_status",
    "fit_learning_curve",
    "load_budget",
    "marked_version",
    "publish_failure",
    "ranking_version",
    "refresh_report",
    "save_budget",
]
