"""A clinician's answer on a cluster -> per-member decisions -> training labels and export states.

* "All epileptiform": every member (but the excluded ones) becomes a spike label of weight ``REVIEW_WEIGHT``.
* "Not epileptiform": every member (but the excluded ones) becomes a negative of the same weight: hard negatives,
  windows the model took for spikes.
* "Mixed": nothing is labeled; the members stay in the ranking of single windows, where the uncertain ones come up.
* An excluded member is treated individually: no label from the cluster's answer, back to the window ranking.

Why ``REVIEW_WEIGHT`` = 0.5: a cluster answer is a judgement of the few members shown (representatives and the most
atypical), extended to the rest; a cluster is accepted with up to a fifth of other members (the oracle's 80 % rule),
so its labels are noisier than a clinician's own look at one window (weight 1), yet far more reliable than the
model's own confident guesses (pseudo-labels, weight 0.3). Half the weight lets ten accepted members pull like five
window labels, and a clinician's label on a window always decides it. A large cluster's members weigh less each:
one cluster's labels together count as at most ``CLUSTER_WEIGHT_CAP`` window labels, so that one answer (on a few
members shown, with up to a fifth of other windows among the rest) cannot outweigh the clinician's own labels.

Decisions are stored per member (:func:`member_decisions`): the latest review that contained a member decides it, so
a second review of a cluster replaces the first's decisions for the members it had, and a member keeps its decision
when a reclustering moves it to another cluster. A clinician's window label always wins: such a member gets no review
label and no review state (the detection exports apply the window labels, :mod:`ls_backend.detect.reviewed`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ls_backend.detect.events import Event
from ls_backend.loop import Labeled

ACCEPTED, MIXED, REJECTED = "All epileptiform", "Mixed", "Not epileptiform"
ANSWERS = (ACCEPTED, MIXED, REJECTED)
REVIEW_WEIGHT = 0.5
CLUSTER_WEIGHT_CAP = 10.0  # the labels of one reviewed cluster weigh at most as much as 10 window labels together
STATES = {ACCEPTED: "accepted", REJECTED: "rejected"}  # Event.reviewed of the members, in the exports


@dataclass(frozen=True)
class ClusterReview:
    """One clinician decision on a cluster: the ``answer`` for its ``members`` at the time (all of them, not only
    those shown), the ``excluded`` ones treated individually."""

    cluster_id: str
    answer: str
    members: tuple[str, ...]
    excluded: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.answer not in ANSWERS:
            raise ValueError(f"cluster {self.cluster_id}: unknown answer {self.answer!r}; expected one of {ANSWERS}")
        stray = sorted(self.excluded - set(self.members))
        if stray:
            raise ValueError(f"cluster {self.cluster_id}: excluded ids {stray[:5]} are not members of the cluster")


@dataclass(frozen=True)
class MemberDecision:
    """What decided one member: the review's cluster, its answer, and whether the member was excluded."""

    cluster_id: str
    answer: str
    excluded: bool = False

    @property
    def target(self) -> float | None:
        """1 (accepted), 0 (rejected), None (mixed, excluded: no label)."""
        if self.excluded or self.answer == MIXED:
            return None
        return 1.0 if self.answer == ACCEPTED else 0.0


@dataclass(frozen=True)
class ReviewLabels:
    """Training labels from reviews, one row per labeled member: ``ids``, ``targets`` [n], ``weights`` [n];
    ``states``: member id -> "accepted" / "rejected" for the exports; ``returned``: the members back in the window
    ranking (mixed clusters, exclusions)."""

    ids: tuple[str, ...]
    targets: np.ndarray
    weights: np.ndarray
    states: dict[str, str]
    returned: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)


def member_decisions(reviews: Sequence[ClusterReview]) -> dict[str, MemberDecision]:
    """Member id -> its decision; ``reviews`` in the order they were given (a later one replaces an earlier one's
    decision for the members they share)."""
    decisions: dict[str, MemberDecision] = {}
    for review in reviews:
        for member in review.members:
            decisions[member] = MemberDecision(review.cluster_id, review.answer, member in review.excluded)
    return decisions


def review_labels(
    reviews: Sequence[ClusterReview], clinician_labeled: Collection[str] = (), weight: float = REVIEW_WEIGHT
) -> ReviewLabels:
    """The labels and export states of ``reviews`` (in the order given); members with a clinician's window label
    (``clinician_labeled``) get neither."""
    if not 0 < weight <= 1:
        raise ValueError(f"review weight must be in (0, 1], got {weight}")
    labeled = set(clinician_labeled)
    decisions = {m: d for m, d in member_decisions(reviews).items() if m not in labeled}
    targets = {m: d.target for m, d in decisions.items() if d.target is not None}
    per_cluster = Counter(decisions[m].cluster_id for m in targets)
    return ReviewLabels(
        ids=tuple(targets),
        targets=np.array(list(targets.values()), np.float32),
        weights=np.array(
            [min(weight, CLUSTER_WEIGHT_CAP / per_cluster[decisions[m].cluster_id]) for m in targets], np.float32
        ),  # fmt: skip
        states={m: STATES[decisions[m].answer] for m in targets},
        returned=tuple(m for m, d in decisions.items() if d.target is None),
    )


def with_reviews(labeled: Labeled, review_X: np.ndarray, labels: ReviewLabels) -> Labeled:
    """The clinician's ``labeled`` windows (weight 1) and the review labels on windows ``review_X`` [n, C, T] (one
    per ``labels.ids``, no time course), in one training set."""
    if len(review_X) != len(labels):
        raise ValueError(f"with_reviews: {len(review_X)} windows for {len(labels)} review labels")
    if not len(labels):
        return labeled
    n_times = labeled.X.shape[2] if len(labeled) else review_X.shape[2]
    dense = None
    if labeled.dense is not None:
        dense = np.concatenate([labeled.dense, np.full((len(labels), n_times), np.nan, np.float32)])
    ids = None if labeled.ids is None else np.concatenate([labeled.ids.astype(object), np.array(labels.ids, object)])
    weight = np.concatenate(
        [np.ones(len(labeled), np.float32) if labeled.weight is None else labeled.weight, labels.weights]
    )
    return Labeled(
        np.concatenate([labeled.X, review_X]),
        np.concatenate([labeled.y, labels.targets]),
        dense,
        labeled.sfreq,
        ids,
        weight,
    )


def apply_reviews(
    events: Sequence[Event], ids: Sequence[str], states: Mapping[str, str], keep_rejected: bool = False
) -> list[Event]:
    """Events (named ``ids``) with their review states: accepted ones marked ``reviewed="accepted"``, rejected ones
    removed (or, with ``keep_rejected``, kept as ``reviewed="rejected"``); the others as they are. Apply before the
    clinicians' window labels (:func:`ls_backend.detect.reviewed.apply_labels`), which then win."""
    if len(ids) != len(events):
        raise ValueError(f"apply_reviews: {len(ids)} ids for {len(events)} events")
    out = []
    for event, member in zip(events, ids):
        state = states.get(member)
        if state == STATES[REJECTED] and not keep_rejected:
            continue
        out.append(event if state is None else replace(event, reviewed=state))
    return out
