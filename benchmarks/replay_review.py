"""Review by cluster, measured: window labeling alone against window labeling plus cluster reviews, by clinician time.

The replay of :mod:`benchmarks.replay` (synthetic patients, the default strategy ``mixed``, ``--batch-size`` window
labels per round, the live retraining's :func:`ls_backend.loop.learn` and :func:`ls_backend.loop.rank` each round),
with one change: from the second round on (once a model detects something), the oracle first answers the
``--reviews`` clusters of the model's detections on the unlabeled pool windows that would change the model most
(:func:`ls_backend.review.clusters.review_order`), each counting as ``--review-cost`` window labels of clinician
time, and the rest of the round's time goes to window labels. Both variants spend the same clinician time per round,
so their curves share the x axis (labels-equivalent).

The oracle answers a cluster from its members' truth: "All epileptiform" when at least 80 % are spikes, "Not
epileptiform" when at most 20 %, else "Mixed"; of the members shown (representatives and atypical ones) it excludes
those that contradict its answer. Review labels train at :data:`ls_backend.review.answers.REVIEW_WEIGHT`; reviewed
windows leave the window ranking (mixed and excluded ones stay).

Both variants are replayed here, on the same seeds (window labels alone is ``--reviews 0`` of the same loop); the
converged fully supervised reference is that of the committed ``benchmarks/results/replay_budget100_<P>.json``
(same data split and settings).

    nice -n 5 python -m benchmarks.replay_review --patients A B C D --seeds 3 --jobs 2
    python -m benchmarks.replay_review --patients A --seeds 1 --out /tmp/review.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.replay import CACHE, COHORT_MINUTES, FULL, REACH, TARGET_MINUTES, labels_to_reach, split_target
from converters.windowset import synthetic_windowset
from ls_backend.loop import in_batches, learn, pseudo_label_pool, rank
from ls_backend.replay import ReplayData, ReplaySettings, labeled_windows, test_scores
from ls_backend.review.answers import ACCEPTED, MIXED, REJECTED, ClusterReview, review_labels, with_reviews
from ls_backend.review.clusters import Cluster, Clustering, cluster_detections, review_order, window_detections

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_OUT = RESULTS / "review_replay.json"
STRATEGY = "mixed"  # the default strategy of the retraining job
ACCEPT_SHARE, REJECT_SHARE = 0.8, 0.2


@dataclass(frozen=True)
class ReviewSettings:
    """Cluster reviews answered per round (from the second) and their cost in window labels."""

    reviews_per_round: int = 2
    review_cost: int = 3


# ---------------------------------------------------------------------------------------------- the oracle


def oracle_review(cluster: Cluster, truth: dict[str, bool]) -> ClusterReview:
    """The oracle's answer on ``cluster`` from its members' truth (see the module docstring)."""
    share = float(np.mean([truth[m] for m in cluster.members]))
    answer = ACCEPTED if share >= ACCEPT_SHARE else REJECTED if share <= REJECT_SHARE else MIXED
    shown = set(cluster.representatives) | set(cluster.atypical)
    wrong = {m for m in shown if truth[m] != (answer == ACCEPTED)} if answer != MIXED else set()
    return ClusterReview(cluster.id, answer, cluster.members, frozenset(wrong))


# ---------------------------------------------------------------------------------------------- one replay


def replay_with_reviews(
    data: ReplayData,
    settings: ReplaySettings,
    review: ReviewSettings,
    ch_names: list[str],
    seed: int,
    sfreq: float = 256.0,
) -> list[dict[str, Any]]:
    """One learning curve by clinician time: after each round the test scores, the labels-equivalent spent
    (``labels``), the window labels and reviews, and what the reviews did."""
    rng = np.random.default_rng(seed)
    truth = {str(i): bool(t) for i, t in enumerate(data.pool_y >= 0.5)}
    labeled = np.zeros(data.n_pool, bool)
    reviews: list[ClusterReview] = []
    model, curve = None, []
    previous: dict[str, frozenset[str]] = {}
    clustering: Clustering | None = None
    ranking = rank(None, in_batches(data.pool_X), None, STRATEGY, settings.batch_size, rng, sfreq)
    free: np.ndarray = np.arange(data.n_pool)
    spent = 0
    for r in range(settings.rounds()):
        start = time.perf_counter()
        answered = []
        if clustering is not None and review.reviews_per_round:
            decided = {m for rv in reviews for m in rv.members}
            for cluster in review_order(clustering, decided)[: review.reviews_per_round]:
                answered.append(oracle_review(cluster, truth))
        reviews += answered
        round_budget = min(settings.batch_size, settings.budget - spent)
        n_windows = max(0, round_budget - review.review_cost * len(answered))
        reviewed_now = {int(m) for rv in answered for m in rv.members}
        order = [i for i in free[ranking.order] if i not in reviewed_now]
        labeled[order[:n_windows]] = True
        spent += n_windows + review.review_cost * len(answered)
        labels = review_labels(reviews, clinician_labeled=[str(i) for i in np.flatnonzero(labeled)])
        review_rows = np.array([int(m) for m in labels.ids], int)
        training = with_reviews(labeled_windows(data, labeled, sfreq), data.pool_X[review_rows], labels)
        taken = labeled.copy()
        taken[review_rows] = True
        free = np.flatnonzero(~taken)
        X_free = data.pool_X[pseudo_label_pool(free.tolist())]
        learned = learn(training, model, settings.plan, seed * 1000 + r, X_free)
        model = learned.model
        outputs: list[dict[str, np.ndarray]] = []
        ranking = rank(
            model,
            in_batches(data.pool_X[free]),
            training,
            STRATEGY,
            settings.batch_size,
            rng,
            sfreq,
            on_batch=outputs.append,
        )
        pool_out = {k: np.concatenate([o[k] for o in outputs]) for k in ("proba", "channel", "embedding")}
        detections = window_detections([str(i) for i in free], pool_out, ch_names, model.threshold)
        clustering = cluster_detections(detections, seed=seed, previous=previous, background=pool_out["embedding"])
        previous = clustering.membership()
        curve.append(
            {
                "labels": spent,
                "windows": int(labeled.sum()),
                "reviews": len(reviews),
                **test_scores(model, data),
                **review_outcome(labels, truth, reviews),
                **export_precision(pool_out, free, labeled, labels, data, model.threshold),
                "detections": len(detections),
                "clusters": [c.size for c in clustering.clusters],
                "other": len(clustering.other),
                "answers": [rv.answer for rv in answered],
                "seconds": time.perf_counter() - start,
            }
        )
        print(
            f"    seed {seed} round {r + 1}: {json.dumps({k: v for k, v in curve[-1].items()}, default=str)}",
            file=sys.stderr,
            flush=True,
        )
    return curve


def review_outcome(labels: Any, truth: dict[str, bool], reviews: list[ClusterReview]) -> dict[str, Any]:
    """How many windows the reviews labeled, and how many of those labels agree with the truth."""
    right = [truth[m] == (t >= 0.5) for m, t in zip(labels.ids, labels.targets)]
    return {
        "review_labels": len(labels),
        "review_positives": int((labels.targets >= 0.5).sum()),
        "review_label_accuracy": float(np.mean(right)) if right else None,
    }


def export_precision(
    pool_out: dict[str, np.ndarray],
    free: np.ndarray,
    labeled: np.ndarray,
    labels: Any,
    data: ReplayData,
    threshold: float,
) -> dict[str, float | None]:
    """Window-level precision and recall, on the pool, of what the exports would hold after review: the clinician's
    spike windows, the accepted members, and the model's detections on the windows nobody decided."""
    spike = data.pool_y >= 0.5
    exported = labeled & spike
    accepted = np.array([int(m) for m, s in labels.states.items() if s == "accepted"], int)
    exported[accepted] = True
    exported[free[pool_out["proba"] >= threshold]] = True
    n = int(exported.sum())
    return {
        "export_precision": float(spike[exported].mean()) if n else None,
        "export_recall": float(exported[spike].mean()),
    }


# ---------------------------------------------------------------------------------------------- data, jobs


def patient_data(patient: str, test_fraction: float = 1 / 3) -> tuple[ReplayData, dict]:
    """The split of ``benchmarks.replay`` (same cache, minutes and seed) for target ``patient``."""
    minutes = {p: COHORT_MINUTES for p in ("A", "B", "C", "D")} | {patient: TARGET_MINUTES}
    ws = synthetic_windowset(tuple(minutes), minutes=minutes, cache_dir=CACHE)
    return split_target(ws, patient, test_fraction)


def store_channels(patient: str) -> list[str]:
    """The channel names of the patient's window store (a few seconds of it converted)."""
    from converters.convert import convert_recording
    from converters.synthetic import PATIENTS, write_edf
    from converters.windows import WindowStore

    with tempfile.TemporaryDirectory(prefix="channels-") as tmp:
        edf = write_edf(Path(tmp) / f"{patient}.edf", PATIENTS[patient], 10.0)
        convert_recording(edf, Path(tmp) / f"{patient}.h5")
        with WindowStore(Path(tmp) / f"{patient}.h5") as store:
            return list(store.ch_names)


def committed(patient: str) -> dict:
    return json.loads((RESULTS / f"replay_budget100_{patient}.json").read_text())


def run_job(job: tuple[str, int, ReviewSettings, ReplaySettings]) -> tuple[tuple[str, int, int], list, float]:
    import torch

    torch.set_num_threads(1)
    patient, seed, review, settings = job
    data, info = patient_data(patient)
    start = time.perf_counter()
    curve = replay_with_reviews(data, settings, review, store_channels(patient), seed, info["sfreq"])
    print(
        f"  {patient} seed {seed} reviews {review.reviews_per_round}: {time.perf_counter() - start:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return (patient, seed, review.reviews_per_round), curve, time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- summary


def summarize(curves: dict[str, dict[int, list[dict]]], reference: float, metric: str = "auprc") -> dict[str, Any]:
    """Per variant: labels-equivalent to reach 95 % of the converged reference on each seed, and the final score."""
    out = {}
    for name, by_seed in curves.items():
        needed = {seed: labels_to_reach(curve, metric, REACH * reference) for seed, curve in by_seed.items()}
        reached = [v for v in needed.values() if v is not None]
        out[name] = {
            "labels_to_95": needed,
            "n_reached": len(reached),
            "n_seeds": len(needed),
            "mean_reached": float(np.mean(reached)) if reached else None,
            "final_mean": float(np.mean([c[-1][metric] for c in by_seed.values()])),
        }
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    patients = list(result["patients"])
    fig, axes = plt.subplots(1, len(patients), figsize=(4.6 * len(patients), 4.2), squeeze=False)
    for ax, patient in zip(axes[0], patients):
        entry = result["patients"][patient]
        for name, color in (("windows alone", "C0"), ("windows + cluster reviews", "C3")):
            by_seed = entry["curves"][name]
            x = np.array([p["labels"] for p in next(iter(by_seed.values()))])
            y = np.array([[p["auprc"] for p in c] for c in by_seed.values()], float)
            ax.plot(x, y.mean(axis=0), "-", marker=".", color=color, label=f"{name} ({len(by_seed)} seeds)")
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=color, alpha=0.15)
        ax.axhline(entry["reference_auprc"], color="k", lw=1, label="full supervision, converged")
        ax.axhline(REACH * entry["reference_auprc"], color="k", lw=0.8, ls=":", label="95 % of it")
        ax.set_title(f"patient {patient}")
        ax.set_xlabel("clinician time (window labels; 1 review = 3)")
        ax.set_ylabel("test AUPRC")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(result: dict) -> str:
    lines = [
        "| patient | variant | seeds reaching 95 % | labels-equivalent to 95 % (per seed) | final AUPRC |",
        "|---|---|---:|---|---:|",
    ]
    for patient, entry in result["patients"].items():
        for name, s in entry["summary"].items():
            per_seed = ", ".join("-" if v is None else str(v) for v in s["labels_to_95"].values())
            lines.append(
                f"| {patient} | {name} | {s['n_reached']}/{s['n_seeds']} | {per_seed} | {s['final_mean']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay_review", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", nargs="+", default=["A", "B", "C", "D"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--reviews", type=int, default=ReviewSettings.reviews_per_round, help="reviews per round")
    parser.add_argument("--review-cost", type=int, default=ReviewSettings.review_cost, help="in window labels")
    parser.add_argument("--budget", type=int, default=100, help="labels-equivalent at the end")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    settings = ReplaySettings(batch_size=FULL.batch_size, budget=args.budget, plan=FULL.plan)
    review = ReviewSettings(args.reviews, args.review_cost)
    alone = ReviewSettings(0, args.review_cost)
    jobs = [(p, s, variant, settings) for p in args.patients for s in range(args.seeds) for variant in (alone, review)]
    start = time.perf_counter()
    done: dict[tuple, tuple[list, float]] = {}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        for future in as_completed([pool.submit(run_job, job) for job in jobs]):
            key, curve, seconds = future.result()
            done[key] = (curve, seconds)
    result: dict[str, Any] = {
        "command": "python -m benchmarks.replay_review " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {
            **asdict(review),
            "batch_size": settings.batch_size,
            "budget": settings.budget,
            "strategy": STRATEGY,
            "accept_share": ACCEPT_SHARE,
            "reject_share": REJECT_SHARE,
        },
        "patients": {},
        "wall_seconds": time.perf_counter() - start,
    }
    for patient in args.patients:
        base = committed(patient)
        reference = base["full_supervised"]["mean"]["auprc"]
        seeds = range(args.seeds)
        curves = {
            "windows alone": {s: done[(patient, s, 0)][0] for s in seeds},
            "windows + cluster reviews": {s: done[(patient, s, review.reviews_per_round)][0] for s in seeds},
        }
        entry = {"reference_auprc": reference, "curves": curves, "summary": summarize(curves, reference)}
        result["patients"][patient] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    plot(result, args.out.with_suffix(".png"))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
