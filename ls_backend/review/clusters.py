"""A patient's detections grouped for review: one clinician decision per group instead of one per window.

Detections are grouped by spatial focus first (the electrode shaft of the peak contact,
:func:`ls_backend.detect.exports.shafts_of`), then by morphology: the model's embedding of the peak channel
(:meth:`SpikeDetector.embed`, on a window centred on the event's peak, see :func:`event_detections`), standardised
with the statistics of the patient's ordinary windows (``background``, :func:`background_embeddings`) and split by
k-means within each shaft (k chosen by the silhouette score; one group when no split is clearly better). A group
smaller than ``min_size``, or whose mean squared distance to its centre exceeds ``max_spread`` times the background's
variance (per dimension: an incoherent group), goes to the "other" bucket, which is reviewed window by window; so do
the groups beyond the ``max_clusters`` largest. Deterministic for a seed.

``MAX_SPREAD``: with models trained on 60 labels of synthetic patients A and C, the true spikes among the detections
had a spread of 1.2 and 0.45, the false detections (artifacts) about 20: a group of one morphology stays under 2.

Ids: a member is named by its event or window id (:func:`event_id` for events). A cluster's id comes from its members
(a hash of their ids), and after a reclustering (a retraining, a new detection run) a cluster that shares at least
half of the smaller one's members with a cluster of the previous clustering keeps that cluster's id
(:func:`carry_ids`). Decisions are stored per member, not per cluster (:mod:`ls_backend.review.answers`), so a
reviewed member keeps its decision whatever cluster it lands in next.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from converters.windows import WindowStore
from ls_backend.detect.events import Event
from ls_backend.detect.exports import shafts_of
from ls_backend.detect.scoring import read_signal
from ls_backend.model.estimator import SpikeDetector

MAX_CLUSTERS = 30
MIN_SIZE = 5  # members of the smallest cluster worth a review (a review costs about 3 window labels)
MAX_SPREAD = 2.0  # mean squared distance to the centre, per dimension, in units of the background's variance
MIN_SILHOUETTE = 0.25  # a shaft is split in k > 1 groups only when they are at least this well separated
MAX_SPLIT = 8  # the most groups one shaft is split into
SILHOUETTE_SAMPLE = 1000  # detections the silhouette score is computed on (it is quadratic)
N_SHOWN = 3  # representative and atypical members shown


@dataclass(frozen=True)
class Detections:
    """What grouping reads of a patient's detections, one row each: ``ids`` (unique), ``embedding`` [n, d],
    ``probability`` [n], ``peak_channel`` [n], ``shaft`` [n] (of the peak channel), ``time_seconds`` [n] (the peak,
    from the start of its recording)."""

    ids: tuple[str, ...]
    embedding: np.ndarray
    probability: np.ndarray
    peak_channel: tuple[str, ...]
    shaft: tuple[str, ...]
    time_seconds: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(set(self.ids)) != n:
            raise ValueError("detections: ids must be unique")
        if self.embedding.ndim != 2 or len(self.embedding) != n:
            raise ValueError(f"detections: embedding must be [{n}, d], got {self.embedding.shape}")
        for name in ("probability", "peak_channel", "shaft", "time_seconds"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"detections: {name} has {len(getattr(self, name))} rows, expected {n} (one per id)")

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Cluster:
    """One group to review. ``members`` closest to the centre first (``distances`` to it in the standardised
    embedding, ``probabilities``, ``times_seconds`` in the same order); ``representatives`` the closest,
    ``atypical`` the farthest; ``peak_contacts``: members per peak channel, most first."""

    id: str
    shaft: str
    members: tuple[str, ...]
    distances: tuple[float, ...]
    probabilities: tuple[float, ...]
    times_seconds: tuple[float, ...]
    peak_contacts: dict[str, int]
    spread: float

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def representatives(self) -> tuple[str, ...]:
        return self.members[:N_SHOWN]

    @property
    def atypical(self) -> tuple[str, ...]:
        """The farthest members, farthest first (none that is also a representative)."""
        return tuple(reversed(self.members[N_SHOWN:]))[:N_SHOWN]


@dataclass(frozen=True)
class Clustering:
    """The ``clusters`` largest first, and the ids of the ``other`` bucket (reviewed by single windows)."""

    clusters: tuple[Cluster, ...]
    other: tuple[str, ...]

    def membership(self) -> dict[str, frozenset[str]]:
        """Cluster id -> its members (what :func:`carry_ids` needs of this clustering next time)."""
        return {c.id: frozenset(c.members) for c in self.clusters}


def cluster_detections(
    detections: Detections,
    max_clusters: int = MAX_CLUSTERS,
    min_size: int = MIN_SIZE,
    max_spread: float = MAX_SPREAD,
    seed: int = 0,
    previous: Mapping[str, Collection[str]] | None = None,
    background: np.ndarray | None = None,
) -> Clustering:
    """Group ``detections`` (see the module docstring); ``previous``: the last clustering's
    :meth:`Clustering.membership`, whose ids the matching clusters keep; ``background`` [m, d]: embeddings of the
    patient's windows at large (default: the detections themselves, where one homogeneous group has spread 1)."""
    if max_clusters < 1 or min_size < 1 or max_spread <= 0:
        raise ValueError(
            f"need max_clusters >= 1, min_size >= 1 and max_spread > 0, got {max_clusters}, {min_size}, {max_spread}"
        )
    X = standardised(detections.embedding, detections.embedding if background is None else background)
    shafts = np.asarray(detections.shaft, dtype=object)
    groups: list[np.ndarray] = []
    for shaft in sorted(set(detections.shaft)):
        rows = np.flatnonzero(shafts == shaft)
        labels = split(X[rows], min_size, seed)
        groups.extend(rows[labels == k] for k in np.unique(labels))
    clusters = [make_cluster(detections, X, rows) for rows in groups]
    kept = [c for c in clusters if c.size >= min_size and c.spread <= max_spread]
    kept = sorted(kept, key=lambda c: (-c.size, c.members[0]))[:max_clusters]
    kept = carry_ids(kept, previous or {})
    grouped = {m for c in kept for m in c.members}
    return Clustering(tuple(kept), tuple(i for i in detections.ids if i not in grouped))


def standardised(embedding: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each dimension centred and scaled by the mean and standard deviation of ``reference`` (constant: 0)."""
    X, ref = np.asarray(embedding, np.float64), np.asarray(reference, np.float64)
    if ref.ndim != 2 or ref.shape[1] != X.shape[1] or len(ref) < 2:
        raise ValueError(f"background: expected at least 2 embeddings of dimension {X.shape[1]}, got {ref.shape}")
    std = ref.std(axis=0)
    return np.where(std > 0, (X - ref.mean(axis=0)) / np.where(std > 0, std, 1.0), 0.0)


def split(X: np.ndarray, min_size: int, seed: int) -> np.ndarray:
    """Group labels [n] of one shaft's detections: k-means with the k (2..``MAX_SPLIT``, groups of ``min_size``
    at least on average) of the best silhouette, or one group when no k reaches ``MIN_SILHOUETTE``."""
    best, best_score = np.zeros(len(X), int), MIN_SILHOUETTE
    for k in range(2, min(MAX_SPLIT, len(X) // min_size) + 1):
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(X)
        if len(np.unique(labels)) < 2:
            continue
        sample = min(len(X), SILHOUETTE_SAMPLE)
        score = float(silhouette_score(X, labels, sample_size=sample, random_state=seed))
        if score > best_score:
            best, best_score = labels, score
    return best


def make_cluster(detections: Detections, X: np.ndarray, rows: np.ndarray) -> Cluster:
    """The cluster of detections ``rows`` (members by distance to their centre; a provisional id)."""
    by_row = dict(zip(rows.tolist(), np.linalg.norm(X[rows] - X[rows].mean(axis=0), axis=1)))
    rows = np.array(sorted(by_row, key=lambda r: (by_row[r], detections.ids[r])))
    distance = np.array([by_row[r] for r in rows])
    members = tuple(detections.ids[r] for r in rows)
    contacts = Counter(detections.peak_channel[r] for r in rows)
    return Cluster(
        id=member_hash(members),
        shaft=detections.shaft[rows[0]],
        members=members,
        distances=tuple(float(d) for d in distance),
        probabilities=tuple(float(detections.probability[r]) for r in rows),
        times_seconds=tuple(float(detections.time_seconds[r]) for r in rows),
        peak_contacts=dict(sorted(contacts.items(), key=lambda kv: (-kv[1], kv[0]))),
        spread=float(np.mean(distance**2) / max(X.shape[1], 1)),
    )


def member_hash(members: Collection[str]) -> str:
    """A cluster id from its members: ``c`` and 10 hex digits of the hash of the sorted ids."""
    return "c" + hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:10]


def carry_ids(clusters: Sequence[Cluster], previous: Mapping[str, Collection[str]]) -> list[Cluster]:
    """``clusters`` (largest first) with the id of the previous cluster they overlap most, where the overlap is at
    least half of the smaller of the two; each previous id goes to one cluster at most, the larger first."""
    taken: set[str] = set()
    out = []
    for cluster in clusters:
        members = set(cluster.members)
        overlap = {old: len(members & set(ids)) for old, ids in previous.items() if old not in taken}
        match = max(sorted(overlap), key=lambda old: overlap[old], default=None)
        if match is not None and 2 * overlap[match] >= min(len(members), len(previous[match])) > 0:
            taken.add(match)
            cluster = replace(cluster, id=match)
        out.append(cluster)
    return out


def entropy(p: np.ndarray) -> np.ndarray:
    """Binary entropy (bits) of probabilities."""
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def review_order(clustering: Clustering, decided: Collection[str] = ()) -> list[Cluster]:
    """The clusters with undecided members, the decision that would change the model most first: the largest sum
    of its undecided members' entropy (large and uncertain clusters)."""

    def gain(cluster: Cluster) -> float:
        p = [p for m, p in zip(cluster.members, cluster.probabilities) if m not in decided]
        return float(entropy(np.asarray(p)).sum()) if p else 0.0

    open_clusters = [c for c in clustering.clusters if any(m not in decided for m in c.members)]
    return sorted(open_clusters, key=lambda c: (-gain(c), c.id))


# ---------------------------------------------------------------------------------------------- inputs


def window_detections(
    ids: Sequence[str], outputs: Mapping[str, np.ndarray], ch_names: Sequence[str], threshold: float
) -> Detections:
    """The windows among ``ids`` the model detects (probability >= ``threshold``), from its
    :meth:`SpikeDetector.predict_all` ``outputs``: the driving channel's embedding, that channel and its shaft; the
    time is the window's order (no recording time)."""
    proba = np.asarray(outputs["proba"])
    if len(ids) != len(proba):
        raise ValueError(f"window_detections: {len(ids)} ids for {len(proba)} scored windows")
    rows = np.flatnonzero(proba >= threshold)
    driver = np.nan_to_num(np.asarray(outputs["channel"])[rows], nan=-1.0).argmax(axis=1)
    shafts = shafts_of(list(ch_names))
    channels = tuple(ch_names[c] for c in driver)
    return Detections(
        ids=tuple(ids[r] for r in rows),
        embedding=np.asarray(outputs["embedding"])[rows],
        probability=proba[rows],
        peak_channel=channels,
        shaft=tuple(shafts[c] for c in channels),
        time_seconds=rows.astype(np.float64),
    )


def event_id(recording: str, event: Event) -> str:
    """A member id of an event: its recording and peak time in milliseconds (``"sub-01_run-1@12345"``)."""
    return f"{recording}@{round(event.peak * 1000)}"


def centred_start(peak: float, sfreq: float, n_times: int, length: int) -> int:
    """The first sample of a window of ``n_times`` centred on ``peak`` seconds, shifted inside ``length`` samples."""
    return min(max(0, round(peak * sfreq) - n_times // 2), length - n_times)


def event_windows(store: WindowStore, events: Sequence[Event], n_times: int) -> np.ndarray:
    """Model input ``[n, n_chans, n_times]`` centred on each event's peak (shifted inside the recording at its
    ends), every channel but the peak channel absent (NaN): the embedding is then the peak channel's."""
    length = int(store.file["signal"].shape[1])
    if length < n_times:
        raise ValueError(f"{store.path}: {length} samples, shorter than one window of {n_times}")
    out = np.full((len(events), store.n_chans, n_times), np.nan, np.float32)
    for i, event in enumerate(events):
        if event.peak_channel not in store.ch_names:
            raise ValueError(
                f"{store.path}: event at {event.peak:.3f} s peaks on unknown channel {event.peak_channel!r}"
            )
        channel = store.ch_names.index(event.peak_channel)
        start = centred_start(event.peak, store.sfreq, n_times, length)
        out[i, channel] = read_signal(store, start, start + n_times)[channel]
    return out


def event_detections(store: WindowStore, events: Sequence[Event], model: SpikeDetector, recording: str) -> Detections:
    """The events of one recording as detections: the model's embedding of the peak channel, on a window centred on
    the peak (:func:`event_windows`)."""
    shafts = shafts_of(list(store.ch_names))
    X = event_windows(store, events, int(model.n_times_))
    return Detections(
        ids=tuple(event_id(recording, e) for e in events),
        embedding=model.embed(X) if len(events) else np.zeros((0, model.width), np.float32),
        probability=np.array([e.probability for e in events], np.float64),
        peak_channel=tuple(e.peak_channel for e in events),
        shaft=tuple(shafts[e.peak_channel] for e in events),
        time_seconds=np.array([e.peak for e in events], np.float64),
    )


def background_embeddings(store: WindowStore, model: SpikeDetector, n: int = 500, seed: int = 0) -> np.ndarray:
    """The model's embedding of one channel (drawn at random) of ``n`` windows drawn at random from ``store``: the
    patient's ordinary variability, the ``background`` of :func:`cluster_detections`."""
    n_times = int(model.n_times_)
    length = int(store.file["signal"].shape[1])
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.integers(0, max(1, length - n_times + 1), n))
    channels = rng.integers(0, store.n_chans, n)
    X = np.full((n, store.n_chans, n_times), np.nan, np.float32)
    for i, (start, channel) in enumerate(zip(starts, channels)):
        X[i, channel] = read_signal(store, int(start), int(start) + n_times)[channel]
    return model.embed(X)
