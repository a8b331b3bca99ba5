"""What a ranking strategy may look at: :class:`PoolView`, small per-window arrays over the unlabeled pool.

Every field is optional; each strategy asks for the fields it needs (:meth:`PoolView.require`) and says which one is
missing. Windows themselves never enter a pool view: they stay in the window store (see
:class:`ls_backend.loop.PoolScorer`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

# field -> (number of dimensions, shape text for errors, values must lie in [0, 1])
_PER_WINDOW = {
    "proba": (1, "[n]", True),
    "mc_proba": (2, "[n, n_samples]", True),
    "committee_proba": (2, "[n, n_members]", True),
    "embeddings": (2, "[n, d]", False),
    "detector_score": (1, "[n]", True),
    "detector_features": (2, "[n, f]", False),
}
_OTHER = {
    "reference_embeddings": (2, "[m, d]", False),
    "labeled_embeddings": (2, "[k, d]", False),
    "labeled_y": (1, "[k]", True),
    "labeled_detector_features": (2, "[k, f]", False),
    "labeled_detector_score": (1, "[k]", True),
}


@dataclass(frozen=True)
class PoolView:
    """Per-window arrays over the ``n`` unlabeled windows (all optional; ``n_windows`` when none is given).

    ``proba`` [n] spike probability; ``mc_proba`` [n, S] MC-dropout draws; ``committee_proba`` [n, M] one column per
    committee member; ``embeddings`` [n, d] model features; ``detector_score`` [n] classical detector score in [0, 1];
    ``reference_embeddings`` [m, d] windows of the cohort (other patients) the model was trained on;
    ``labeled_embeddings`` [k, d] and ``labeled_y`` [k] (0/1, or soft in [0, 1]) the windows already labeled;
    ``detector_features`` [n, f] and ``labeled_detector_features`` [k, f] the classical detector's features of the
    pool's and the labeled windows (where the search for the first spikes looks), ``labeled_detector_score`` [k] its
    score of the labeled windows (against the pool's statistics: what it promised for them).
    """

    proba: np.ndarray | None = None
    mc_proba: np.ndarray | None = None
    committee_proba: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    detector_score: np.ndarray | None = None
    reference_embeddings: np.ndarray | None = None
    labeled_embeddings: np.ndarray | None = None
    labeled_y: np.ndarray | None = None
    detector_features: np.ndarray | None = None
    labeled_detector_features: np.ndarray | None = None
    labeled_detector_score: np.ndarray | None = None
    n_windows: int | None = None

    def __post_init__(self) -> None:
        for name, spec in {**_PER_WINDOW, **_OTHER}.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _checked(name, value, *spec))
        object.__setattr__(self, "n_windows", self._pool_size())
        self._check_sizes()

    def _pool_size(self) -> int:
        sizes = {name: len(getattr(self, name)) for name in _PER_WINDOW if getattr(self, name) is not None}
        if self.n_windows is not None:
            sizes["n_windows"] = int(self.n_windows)
        if not sizes:
            raise ValueError(
                "PoolView needs at least one per-window array (proba, mc_proba, committee_proba, "
                "embeddings, detector_score) or n_windows"
            )
        if len(set(sizes.values())) > 1:
            raise ValueError(f"PoolView: per-window arrays disagree on the pool size n: {sizes}")
        return next(iter(sizes.values()))

    def _check_sizes(self) -> None:
        for what, group in (
            ("embedding widths d", ("embeddings", "reference_embeddings", "labeled_embeddings")),
            ("detector feature widths f", ("detector_features", "labeled_detector_features")),
        ):
            d = {name: getattr(self, name).shape[1] for name in group if getattr(self, name) is not None}
            if len(set(d.values())) > 1:
                raise ValueError(f"PoolView: {what} disagree: {d}")
        for name, minimum in (("mc_proba", 2), ("committee_proba", 2)):
            value = getattr(self, name)
            if value is not None and value.shape[1] < minimum:
                raise ValueError(
                    f"PoolView.{name}: expected shape {_PER_WINDOW[name][1]} with at least {minimum} "
                    f"columns, got {value.shape}"
                )
        for name in ("labeled_embeddings", "labeled_detector_features", "labeled_detector_score"):
            rows = getattr(self, name)
            if self.labeled_y is not None and rows is not None and len(self.labeled_y) != len(rows):
                raise ValueError(
                    f"PoolView.labeled_y: expected shape [k] with k = {len(rows)} (rows of {name}), "
                    f"got {self.labeled_y.shape}"
                )

    @property
    def n(self) -> int:
        """Number of unlabeled windows in the pool."""
        return int(self.n_windows or 0)  # never None: __post_init__ sets it

    def require(self, strategy: str, name: str) -> np.ndarray:
        """The field ``name``; a ValueError naming ``strategy`` and the field when it is missing."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{strategy} needs PoolView.{name} {_shape_of(name)}, which is missing")
        return value

    def mean_proba(self) -> np.ndarray | None:
        """Spike probability: ``proba``, else the mean of the MC draws, else of the committee; None without a model."""
        for name in ("proba", "mc_proba", "committee_proba"):
            value = getattr(self, name)
            if value is not None:
                return value if value.ndim == 1 else value.mean(axis=1)
        return None

    def draws(self) -> np.ndarray | None:
        """Several probabilities per window: the committee's, else the MC-dropout draws; None when neither is given."""
        return self.committee_proba if self.committee_proba is not None else self.mc_proba

    def fields_given(self) -> list[str]:
        """Names of the arrays present (for logs)."""
        return [f.name for f in fields(self) if f.name != "n_windows" and getattr(self, f.name) is not None]


def _shape_of(name: str) -> str:
    return {**_PER_WINDOW, **_OTHER}[name][1]


def _checked(name: str, value: object, ndim: int, shape: str, unit_interval: bool) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"PoolView.{name}: expected shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"PoolView.{name}: contains NaN or infinite values")
    if unit_interval and array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"PoolView.{name}: values must lie in [0, 1], got [{array.min():.3g}, {array.max():.3g}]")
    return array
