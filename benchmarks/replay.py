"""Replayable active-learning benchmark: learning curves of query strategies against random sampling.

Each (strategy, seed) replays the labeling loop on the target patient with an oracle
(:func:`ls_backend.replay.replay`): no label at first, ``--batch-size`` windows per round, each round the live
retraining's training and ranking (:mod:`ls_backend.loop`), test AUPRC and F1 after each round, until ``--budget``
labels. The reference is the fully supervised model trained to convergence on every pool label of the target (same
seeds); a compute-matched one (as many training windows as a replay's last model) is reported beside it.
``--warm-start`` adds, for every strategy, the same loop starting from a cohort model trained on the other patients.
``--pretrain`` adds the loop whose first model starts from an encoder pretrained (self-supervised,
:mod:`ls_backend.model.pretrain`) on the target's unlabeled windows, pool and test alike, never their labels (with
``--warm-start`` too: also from a cohort model trained from that encoder); with ``--cold-embeddings`` also the one
that chooses its first batch with the diversity of that encoder's embeddings (``+embed``). ``--consistency`` adds
the loop whose models also learn from the unlabeled windows by consistency between views
(:mod:`ls_backend.model.consistency`, ``+consistency``; with ``--pretrain`` also from the pretrained encoder).

    python -m benchmarks.replay                                   # synthetic A-D, target D, 5 strategies x 3 seeds
    python -m benchmarks.replay --warm-start --jobs 2
    python -m benchmarks.replay --target-patient A --strategies random mixed --pretrain --budget 100
    python -m benchmarks.replay --target-patient B --strategies mixed --consistency --budget 100
    python -m benchmarks.replay --windowset sets/cohort.npz --target-patient P07
    python -m benchmarks.replay --recordings bids_root --target-patient P02
    python -m benchmarks.replay --quick --out /tmp/replay.json     # tiny, for CI
    python -m benchmarks.replay --resummarize benchmarks/results/replay.json   # summary again from the curves
    python -m benchmarks.replay --target-patient A --update-references benchmarks/results/replay_budget100_A.json

Writes ``--out`` (JSON: settings, curves, reference, summary, targets, wall time) and the PNG next to it, and prints
the summary table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from converters.windowset import WindowSet, load_windowset, synthetic_windowset, windowset_from_recordings
from ls_backend.active.strategies import parse_params
from ls_backend.loop import Plan
from ls_backend.model import SpikeDetector
from ls_backend.model.pretrain import OBJECTIVES, PretrainParams, pretrain_from_stores
from ls_backend.replay import (
    ReplayData,
    ReplaySettings,
    check_strategy,
    compute_matched_reference,
    converged_reference,
    fit_cohort,
    replay,
)

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "replay.json"
CACHE = HERE / "_data" / "windowsets"
DEFAULT_STRATEGIES = ("random", "entropy", "bald", "kcenter", "mixed")
REACH = 0.95  # of the fully supervised score
METRICS = ("auprc", "f1")
WARM = "+warm"  # suffix of the warm-start variant of a strategy
PRETRAIN = "+pretrain"  # suffix of the variant whose first model starts from the pretrained encoder
EMBED = "+embed"  # after PRETRAIN: the first batch is also chosen with the encoder's embeddings (--cold-embeddings)
COHORT = "+cohort"  # of the pretraining job: it also draws the cohort's windows (--pretrain-cohort)
CONSISTENT = "+consistency"  # last: the models also learn from unlabeled windows by consistency (--consistency)
CONSISTENCY_WEIGHT = 1.0  # of the consistency term, against the supervised loss (FixMatch's lambda)
AT_LABELS = (20, 50, 100)  # label counts whose scores the summary reports
SPLIT_BLOCK = 10  # consecutive windows assigned together to pool or test (neighbours share events)
TARGET_MINUTES, COHORT_MINUTES = 20.0, 5.0


@dataclass(frozen=True)
class Preset:
    """Data size and training effort of a run (``--quick`` for CI, else the default comparison, which trains as the
    live retraining does)."""

    target_minutes: float
    cohort_minutes: float
    patients: tuple[str, ...]
    batch_size: int
    budget: int
    plan: Plan
    cohort_epochs: int
    reference_epochs: int
    pretrain: PretrainParams = PretrainParams()


FULL = Preset(TARGET_MINUTES, COHORT_MINUTES, ("A", "B", "C", "D"), 20, 200, Plan(model={"n_threads": 1}), 12, 100)
QUICK = Preset(
    1.0,
    0.5,
    ("A", "C"),
    8,
    16,
    Plan(
        cold_epochs=2,
        warm_epochs=1,
        model={"width": 8, "depth": 2, "kernel_size": 5, "dilation": 1, "samples_per_epoch": 32, "n_threads": 1},
    ),
    2,
    4,
    PretrainParams(steps=3, batch_size=16, n_windows=200),
)


# ---------------------------------------------------------------------------------------------- data


def load_data(args: argparse.Namespace, preset: Preset) -> WindowSet:
    """The window set of every patient: a file, recordings with events, or the synthetic patients."""
    if args.windowset:
        return load_windowset(args.windowset)
    if args.recordings:
        return windowset_from_recordings(args.recordings)
    minutes = {p: preset.cohort_minutes for p in preset.patients} | {args.target_patient: preset.target_minutes}
    return synthetic_windowset(tuple(minutes), minutes=minutes, cache_dir=CACHE)


def split_target(ws: WindowSet, target: str | None, test_fraction: float, seed: int = 0) -> tuple[ReplayData, dict]:
    """The target patient's windows in blocks of ``SPLIT_BLOCK`` consecutive windows, a seeded ``test_fraction`` of
    the blocks (stratified: blocks with and without events) held out for testing; the other patients' windows are
    the cohort (warm start, transfer)."""
    if ws.groups is None:
        if target not in (None, "all"):
            raise ValueError(f"--target-patient {target!r}: the window set has no groups (patient ids)")
        is_target = np.ones(len(ws), bool)
    else:
        if target not in set(ws.groups):
            raise ValueError(
                f"--target-patient {target!r} is not in the window set; its patients: "
                f"{', '.join(sorted(set(ws.groups)))}"
            )
        is_target = ws.groups == target
    rows = np.flatnonzero(is_target)
    blocks = np.arange(len(rows)) // SPLIT_BLOCK
    has_event = np.bincount(blocks, weights=ws.y[rows] >= 0.5) > 0
    rng = np.random.default_rng(seed)
    test_blocks = []
    for stratum in (np.flatnonzero(has_event), np.flatnonzero(~has_event)):  # blocks with events, without
        test_blocks.extend(rng.permutation(stratum)[: round(test_fraction * len(stratum))])
    test = np.isin(blocks, test_blocks)
    pool, held = rows[~test], rows[test]
    for name, idx in (("pool", pool), ("test", held)):
        if not np.any(ws.y[idx] >= 0.5):
            raise ValueError(f"target patient {target!r}: the {name} split has no positive window; use more data")
    cohort = np.flatnonzero(~is_target)
    data = ReplayData(ws.X[pool], ws.y[pool], ws.X[held], ws.y[held], _rows(ws.y_dense, pool))
    if len(cohort):
        data = replace(
            data, reference_X=ws.X[cohort], reference_y=ws.y[cohort], reference_dense=_rows(ws.y_dense, cohort)
        )
    info = {
        "target": target,
        "n_pool": len(pool),
        "pool_positives": int((ws.y[pool] >= 0.5).sum()),
        "n_test": len(held),
        "test_positives": int((ws.y[held] >= 0.5).sum()),
        "n_cohort": int((~is_target).sum()),
        "n_chans": int(np.isfinite(ws.X[rows][:, :, 0]).sum(1).max()),
        "n_times": ws.X.shape[2],
        "sfreq": ws.sfreq,
    }
    return data, info


def _rows(array: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if array is None else array[rows]


# ---------------------------------------------------------------------------------------------- jobs

_STATE: dict[str, Any] = {}  # per worker process: the data and settings


def _init_worker(
    data: ReplayData,
    settings: ReplaySettings,
    sfreq: float,
    cohort_epochs: int,
    pretrain: PretrainParams,
) -> None:
    import torch

    torch.set_num_threads(1)
    _STATE.update(data=data, settings=settings, sfreq=sfreq, cohort_epochs=cohort_epochs, pretrain=pretrain)


def strategy_of(name: str) -> str:
    """The strategy of a variant's name (``mixed+warm+pretrain`` -> ``mixed``)."""
    return name.split("+")[0]


def _run_job(job: tuple[str, str, int, SpikeDetector | dict | None]) -> tuple[Any, float]:
    """``("cohort", _, seed, encoder state or None)``, ``("pretrain", _, seed, _)`` (the encoder pretrained on the
    target's unlabeled windows), ``("full", _, seed, _)`` (the converged reference), ``("matched", _, seed, _)``
    (the compute-matched one) or ``("replay", variant, seed, start)``, ``start`` a cohort model, an encoder state
    (the first model's trunk) or None -> (result, seconds)."""
    kind, name, seed, start_from = job
    data, settings = _STATE["data"], _STATE["settings"]
    start = time.perf_counter()
    out: Any
    if kind == "cohort":
        out = fit_cohort(data, settings, seed, _STATE["cohort_epochs"], init_from=start_from)
    elif kind == "pretrain":
        params: PretrainParams = _STATE["pretrain"]
        sources = [data.pool_X, data.test_X]
        if name.endswith(COHORT) and data.reference_X is not None:
            sources.append(data.reference_X)  # the other patients' windows too, unlabeled
        out = pretrain_from_stores(sources, settings.plan.model, params, seed, _STATE["sfreq"])
    elif kind == "full":
        out = converged_reference(data, settings, seed)
    elif kind == "matched":
        out = compute_matched_reference(data, settings, seed)
    else:
        cohort = start_from if isinstance(start_from, SpikeDetector) else None
        settings = replace(settings, plan=variant_plan(name, settings.plan, start_from))
        out = [r.to_dict() for r in replay(strategy_of(name), data, settings, seed, _STATE["sfreq"], cohort)]
    seconds = time.perf_counter() - start
    print(f"  {kind} {name} seed {seed}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return out, seconds


def variant_plan(name: str, plan: Plan, start_from: Any) -> Plan:
    """The plan of a variant: consistency training for ``+consistency``, the first model from the encoder
    ``start_from`` (a state dict) for ``+pretrain``, the encoder's embeddings for the first batch for ``+embed``."""
    if name.endswith(CONSISTENT):
        plan = replace(plan, model={**plan.model, "consistency_weight": CONSISTENCY_WEIGHT})
    if isinstance(start_from, dict):
        plan = replace(plan, encoder=start_from, cold_embeddings=name.removesuffix(CONSISTENT).endswith(EMBED))
    return plan


def run_jobs(jobs: list[tuple], n_workers: int, initargs: tuple) -> dict[tuple, dict]:
    """Run jobs in ``n_workers`` processes (one torch thread each), or inline when 1. Returns, per job key
    ``(kind, name, seed)``: ``result``, ``seconds`` (the job) and ``finished`` (seconds since this call began)."""
    start = time.perf_counter()
    done: dict[tuple, dict] = {}

    def record(job: tuple, out: tuple[Any, float]) -> None:
        done[job[:3]] = {"result": out[0], "seconds": out[1], "finished": time.perf_counter() - start}

    if n_workers <= 1:
        _init_worker(*initargs)
        for job in jobs:
            record(job, _run_job(job))
        return done
    ctx = get_context("spawn")  # no fork after torch started its threads
    with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker, initargs=initargs) as pool:
        futures = {pool.submit(_run_job, job): job for job in jobs}
        for future in as_completed(futures):
            record(futures[future], future.result())
    return done


# ---------------------------------------------------------------------------------------------- summary


def labels_to_reach(curve: list[dict], metric: str, threshold: float) -> int | None:
    """Labels at the first round whose score reaches ``threshold``; None when the curve never does."""
    for point in curve:
        if np.isfinite(point[metric]) and point[metric] >= threshold:
            return int(point["labels"])
    return None


def area_under_curve(curve: list[dict], metric: str) -> float:
    """Mean score over the label range from the first batch to the budget (trapezoids; 1 = perfect throughout)."""
    points = [p for p in curve if p["labels"] > 0]
    x = np.array([p["labels"] for p in points], float)
    y = np.nan_to_num(np.array([p[metric] for p in points], float))
    if len(x) < 2:
        return float(y[0]) if len(y) else float("nan")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    v = np.asarray(values, float)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def score_at(curve: list[dict], metric: str, labels: int) -> float | None:
    """The score after ``labels`` labels, linearly interpolated between the rounds around it (50 labels lie between
    rounds of 20); None outside the curve."""
    x = [p["labels"] for p in curve]
    if not x or not x[0] <= labels <= x[-1]:
        return None
    return float(np.interp(labels, x, [p[metric] for p in curve]))


def scores_at(by_seed: dict, metric: str, full_mean: float) -> dict[str, dict]:
    """Per label count of ``AT_LABELS`` the curves reach: the scores' spread over the seeds, and their mean over the
    fully supervised score."""
    out = {}
    for n in AT_LABELS:
        values = [score_at(curve, metric, n) for curve in by_seed.values()]
        if all(v is not None for v in values):
            spread = _spread([float(v) for v in values if v is not None])
            relative = None if spread["mean"] is None or full_mean <= 0 else spread["mean"] / full_mean
            out[str(n)] = spread | {"relative": relative}
    return out


def summarize(curves: dict[str, dict[int, list[dict]]], full: dict[int, dict]) -> dict[str, dict]:
    """Per strategy variant and metric: labels to reach 95 % of the fully supervised score (its mean over its seeds:
    one model's score moves by tenths between seeds here) per seed (None = not reached within the budget), their
    spread over the seeds that reached it, the area under the curve, and the scores at ``AT_LABELS`` labels."""
    summary: dict[str, dict] = {}
    for name, by_seed in curves.items():
        entry: dict[str, Any] = {}
        for metric in METRICS:
            full_mean = float(np.mean([f[metric] for f in full.values()]))
            needed = [labels_to_reach(curve, metric, REACH * full_mean) for curve in by_seed.values()]
            reached = [n for n in needed if n is not None]
            aulc = [area_under_curve(curve, metric) for curve in by_seed.values()]
            entry[metric] = {
                "labels_to_95": {
                    "per_seed": needed,
                    "n_reached": len(reached),
                    "n_seeds": len(needed),
                    "all_reached": len(reached) == len(needed),
                    **_spread(reached),
                },
                "aulc": _spread(aulc),
                "aulc_relative": float(np.mean(aulc) / full_mean) if full_mean > 0 else None,
                "final": _spread([curve[-1][metric] for curve in by_seed.values()]),
                "at_labels": scores_at(by_seed, metric, full_mean),
            }
        summary[name] = entry
    return summary


def compare(summary: dict, a: str, b: str, budget: int, metric: str = "auprc") -> dict[str, Any]:
    """Labels ``a`` needs over labels ``b`` needs (to 95 % of full supervision, seed means). When ``b`` did not
    reach it on every seed within the budget, the ratio is an upper bound (``b`` needs more than the budget)."""
    if a not in summary or b not in summary:
        return {"ratio": None, "note": f"{a} or {b} not run"}
    la, lb = summary[a][metric]["labels_to_95"], summary[b][metric]["labels_to_95"]
    if not la["all_reached"]:
        return {
            "ratio": None,
            "note": f"{a} did not reach 95 % on {la['n_seeds'] - la['n_reached']} of {la['n_seeds']} seeds",
        }
    if not lb["all_reached"]:
        return {
            "ratio": None,
            "upper_bound": la["mean"] / budget,
            "note": f"{b} did not reach 95 % on {lb['n_seeds'] - lb['n_reached']} of {lb['n_seeds']} seeds "
            "within the budget: the ratio is at most upper_bound",
        }
    return {"ratio": la["mean"] / lb["mean"], "note": ""}


def labels_to_match(curves: dict[str, dict[int, list[dict]]], a: str, b: str, metric: str = "auprc") -> dict:
    """Per seed, the labels ``a`` needs to reach the score ``b`` ends with (at the budget), over ``b``'s labels:
    a paired measure that exists when ``b`` never reaches 95 % of full supervision."""
    if a not in curves or b not in curves:
        return {"ratio_per_seed": None, "note": f"{a} or {b} not run"}
    per_seed = {}
    for seed, curve in curves[b].items():
        needed = labels_to_reach(curves[a][seed], metric, curve[-1][metric])
        per_seed[seed] = None if needed is None else needed / curve[-1]["labels"]
    return {"ratio_per_seed": per_seed, "metric": metric, "note": f"labels {a} needs to reach {b}'s final {metric}"}


def targets(summary: dict, warm_names: list[str], budget: int, curves: dict | None = None) -> dict[str, Any]:
    """The issue's targets, measured: mixed vs random (<= 1/3 of the labels); warm vs cold start (>= 1/2 saved);
    pretrained vs not (>= 1/2 saved, >= 90 % of the reference at 50 labels), the same for consistency training vs
    not. With ``curves``, also the labels mixed needs to match random's final score (per seed)."""
    out: dict[str, Any] = {"mixed_vs_random": {**compare(summary, "mixed", "random", budget), "target": "<= 1/3"}}
    if curves is not None:
        out["mixed_matches_random_final"] = labels_to_match(curves, "mixed", "random")
    if warm_names:
        savings = {}
        for name in warm_names:
            c = compare(summary, name + WARM, name, budget)
            saved = None if c["ratio"] is None else 1 - c["ratio"]
            savings[name] = {"labels_saved": saved, **c}
        out["warm_vs_cold"] = {"per_strategy": savings, "target": "labels saved >= 0.5"}
    pretrained = {
        n: n.removesuffix(EMBED).removesuffix(PRETRAIN) for n in summary if n.removesuffix(EMBED).endswith(PRETRAIN)
    }
    consistent = {n: n.removesuffix(CONSISTENT) for n in summary if n.endswith(CONSISTENT)}
    for key, variants in (("pretrain_vs_not", pretrained), ("consistency_vs_not", consistent)):
        if variants:
            out[key] = {
                "per_variant": {n: gain(summary, n, base, budget) for n, base in variants.items() if base in summary},
                "target": "labels saved >= 0.5, and at 50 labels >= 0.9 of the converged reference",
            }
    return out


def gain(summary: dict, name: str, base: str, budget: int) -> dict[str, Any]:
    """Variant ``name`` against the variant ``base`` it adds to: labels saved to 95 % of the reference, and both
    variants' AUPRC at 50 labels over the reference."""
    c = compare(summary, name, base, budget)
    at_50 = {n: summary[n]["auprc"]["at_labels"].get("50", {}).get("relative") for n in (name, base) if n in summary}
    return {"labels_saved": None if c["ratio"] is None else 1 - c["ratio"], **c, "relative_at_50": at_50}


def _reference(per_seed: dict[int, dict]) -> dict[str, Any]:
    return {
        "per_seed": per_seed,
        "mean": {m: float(np.mean([f[m] for f in per_seed.values()])) for m in (*METRICS, "best_f1")},
    }


# ---------------------------------------------------------------------------------------------- report


def _fmt_labels(entry: dict) -> str:
    lab = entry["labels_to_95"]
    if lab["n_reached"] == 0:
        return "not reached"
    text = f"{lab['mean']:.0f} ± {lab['std']:.0f}"
    return text if lab["all_reached"] else f"{text} ({lab['n_reached']}/{lab['n_seeds']} seeds; rest not reached)"


def table(result: dict) -> str:
    full = result["full_supervised"]["mean"]
    lines = [
        f"fully supervised, converged ({result['data']['n_pool']} labels): AUPRC {full['auprc']:.3f}, "
        f"F1 {full['f1']:.3f}",
        "| strategy | labels to 95% AUPRC | AULC AUPRC (rel.) | final AUPRC | labels to 95% F1 | AULC F1 | final F1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    if "compute_matched" in result:
        matched = result["compute_matched"]["mean"]
        lines.insert(1, f"fully supervised, compute-matched: AUPRC {matched['auprc']:.3f}, F1 {matched['f1']:.3f}")
    for name, s in result["summary"].items():
        a, f = s["auprc"], s["f1"]
        lines.append(
            f"| {name} | {_fmt_labels(a)} | {a['aulc']['mean']:.3f} ({a['aulc_relative']:.2f}) | "
            f"{a['final']['mean']:.3f} | {_fmt_labels(f)} | {f['aulc']['mean']:.3f} | "
            f"{f['final']['mean']:.3f} |"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(6.5 * len(METRICS), 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bases = list(dict.fromkeys(strategy_of(name) for name in result["curves"]))
    hue = strategy_of if len(bases) > 1 else str  # one strategy: a colour per variant
    hues = list(dict.fromkeys(hue(name) for name in result["curves"]))
    styles = {"": "-", WARM: "--", PRETRAIN: ":", WARM + PRETRAIN: "-.", PRETRAIN + EMBED: (0, (1, 3)),
              CONSISTENT: (0, (5, 1)), PRETRAIN + CONSISTENT: (0, (3, 1, 1, 1))}  # fmt: skip
    for ax, metric in zip(axes[0], METRICS):
        for name, by_seed in result["curves"].items():
            curves = list(by_seed.values())
            x = np.array([p["labels"] for p in curves[0]])
            y = np.array([[p[metric] for p in c] for c in curves], float)
            color = colors[hues.index(hue(name)) % len(colors)]
            style = styles.get(name[len(strategy_of(name)) :], "-")
            ax.plot(x, np.nanmean(y, axis=0), linestyle=style, color=color, label=name, marker=".")
            ax.fill_between(x, np.nanmin(y, axis=0), np.nanmax(y, axis=0), color=color, alpha=0.12)
        full = result["full_supervised"]["mean"][metric]
        ax.axhline(full, color="k", lw=1, label=f"full supervision, converged ({result['data']['n_pool']} labels)")
        ax.axhline(REACH * full, color="k", lw=0.8, ls=":", label="95 % of it")
        ax.set_xlabel(f"labels of patient {result['data']['target']}")
        ax.set_ylabel(f"test {metric.upper() if metric == 'auprc' else 'F1 at 0.5'}")
        ax.set_title(f"{metric.upper()}: mean over {len(result['seeds'])} seeds, band = min-max")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.replay",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--windowset", type=Path, help="window set file (.npz/.h5, see converters.windowset)")
    source.add_argument(
        "--recordings",
        type=Path,
        nargs="+",
        help="recordings with complete events (files, or BIDS folders with events.tsv)",
    )
    parser.add_argument("--target-patient", default="D", help="patient (group) whose labels are replayed")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    parser.add_argument("--batch-size", type=int, help=f"windows per round (default {FULL.batch_size})")
    parser.add_argument("--budget", type=int, help=f"labels at the end (default {FULL.budget})")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument(
        "--reference-seeds", type=int, help="seeds of the fully supervised references (default: --seeds)"
    )
    parser.add_argument(
        "--warm-start",
        action="store_true",
        help="also replay every strategy from a cohort model trained on the other patients",
    )
    parser.add_argument(
        "--warm-strategies", nargs="+", help="with --warm-start: the strategies replayed warm (default: all)"
    )
    parser.add_argument(
        "--pretrain",
        action="store_true",
        help="also replay every strategy from an encoder pretrained on the target's unlabeled windows (and, with "
        "--warm-start, from a cohort model trained from it)",
    )
    parser.add_argument(
        "--cold-embeddings",
        action="store_true",
        help="with --pretrain: also the variant that chooses the first batch with the pretrained encoder's embeddings "
        "(suffix +embed)",
    )
    parser.add_argument(
        "--consistency",
        action="store_true",
        help="also replay every strategy (and, with --pretrain, every pretrained one) with consistency training on "
        "the unlabeled windows (suffix +consistency)",
    )
    parser.add_argument(
        "--pretrain-steps", type=int, help=f"pretraining steps (default {FULL.pretrain.steps}; --quick: fewer)"
    )
    parser.add_argument(
        "--pretrain-transients",
        type=float,
        metavar="SHARE",
        help="share of the pretraining's channel-windows taken from the window's most transient channel (default 0: "
        "random channels)",
    )
    add_pretrain_objective_option(parser)
    parser.add_argument(
        "--pretrain-cohort",
        action="store_true",
        help="the pretraining also draws the other patients' windows (unlabeled), in proportion to their number",
    )
    add_model_option(parser)
    parser.add_argument("--test-fraction", type=float, default=1 / 3, help="target windows held out for testing")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--quick", action="store_true", help="tiny data, model and budget (CI)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output; the PNG goes next to it")
    parser.add_argument(
        "--resummarize", type=Path, metavar="JSON", help="recompute the summary, targets and plot of a result file"
    )
    parser.add_argument(
        "--references-from",
        type=Path,
        metavar="JSON",
        help="take the fully supervised references from this result file (a run on the same data and target) "
        "instead of training them again",
    )
    parser.add_argument(
        "--update-references",
        type=Path,
        metavar="JSON",
        help="train the converged references of a result file again (same data options and target as its run) and "
        "recompute its summary, targets and plot; the curves are kept",
    )
    return parser


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """``--model PARAM=VALUE,...``: SpikeDetector parameters over the live retraining's (:func:`model_params`)."""
    parser.add_argument(
        "--model",
        type=model_params,
        default={},
        metavar="PARAM=VALUE,...",
        help="SpikeDetector parameters over the live retraining's for every model the run trains (e.g. "
        "channel_pool=lse, width=64,depth=8, device=cuda)",
    )


def add_pretrain_objective_option(parser: argparse.ArgumentParser) -> None:
    """``--pretrain-objective``: the pretraining's objective (:data:`~ls_backend.model.pretrain.OBJECTIVES`)."""
    parser.add_argument(
        "--pretrain-objective",
        choices=sorted(OBJECTIVES),
        help=f"the pretraining's objective (default {PretrainParams().objective}; contrastive: two views of one "
        "channel-window; neighbours: of two neighbouring channels of one window; masked: reconstruction)",
    )


def model_params(text: str) -> dict[str, Any]:
    """``--model``'s value: SpikeDetector parameters, checked by name."""
    params = parse_params(text)
    known = SpikeDetector._get_param_names()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise argparse.ArgumentTypeError(f"SpikeDetector has no parameter(s) {', '.join(unknown)}; it takes {known}")
    return params


def resummarize(path: Path) -> dict[str, Any]:
    """Summary, targets and PNG of a result file again from its curves (e.g. after a change of the summary)."""
    result = json.loads(path.read_text())
    full = {int(s): v for s, v in result["full_supervised"]["per_seed"].items()}
    summary = summarize(result["curves"], full)
    result["summary"] = summary
    result["targets"] = targets(summary, result["warm_strategies"], result["settings"]["budget"], result["curves"])
    save_result(result, path, report=True)
    return result


def stored_references(path: Path, info: dict) -> dict[tuple, dict]:
    """The converged and compute-matched references of the result file at ``path`` as finished jobs; its data must
    be this run's."""
    result = json.loads(path.read_text())
    check_same_data(path, result, info)
    done = {}
    for kind, key in (("full", "full_supervised"), ("matched", "compute_matched")):
        for seed, scores in result[key]["per_seed"].items():
            done[(kind, kind, int(seed))] = {"result": scores, "seconds": 0.0, "finished": 0.0}
    return done


def check_same_data(path: Path, result: dict, info: dict) -> None:
    stored = {k: result["data"].get(k) for k in ("target", "n_pool", "n_test", "pool_positives")}
    if stored != {k: info[k] for k in stored}:
        raise SystemExit(f"{path}: its data {stored} is not this run's; pass the data options and target of its run")


def update_references(
    path: Path, data: ReplayData, info: dict, settings: ReplaySettings, initargs: tuple, jobs: int
) -> dict[str, Any]:
    """Retrain the converged references of the result file at ``path`` on the same data, then resummarize it."""
    result = json.loads(path.read_text())
    check_same_data(path, result, info)
    seeds = [int(s) for s in result["full_supervised"]["per_seed"]]
    done = run_jobs([("full", "full", s, None) for s in seeds], jobs, initargs)
    result["full_supervised"] = _reference({s: done[("full", "full", s)]["result"] for s in seeds})
    result["settings"]["reference_epochs"] = settings.reference_epochs
    result["settings"]["reference_patience"] = settings.reference_patience
    path.write_text(json.dumps(result, indent=1))
    return resummarize(path)


def save_result(result: dict[str, Any], out: Path, report: bool) -> None:
    """The JSON and the PNG next to it; with ``report``, the table and the targets printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    if report:
        print(table(result))
        print(json.dumps(result["targets"], indent=1))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.resummarize:
        resummarize(args.resummarize)
        return 0
    preset = QUICK if args.quick else FULL
    for name in args.strategies + (args.warm_strategies or []):
        check_strategy(name)
    if args.quick and args.target_patient not in preset.patients and not (args.windowset or args.recordings):
        args.target_patient = preset.patients[-1]
    started = time.perf_counter()
    ws = load_data(args, preset)
    data, info = split_target(ws, args.target_patient, args.test_fraction)
    data_seconds = time.perf_counter() - started
    settings = ReplaySettings(
        args.batch_size or preset.batch_size,
        args.budget or preset.budget,
        replace(preset.plan, model={**preset.plan.model, **args.model}),
        reference_epochs=preset.reference_epochs,
    )
    settings.check(data.n_pool)
    seeds = list(range(args.seeds))
    pretrain = replace(
        preset.pretrain,
        steps=args.pretrain_steps or preset.pretrain.steps,
        transient_share=args.pretrain_transients or preset.pretrain.transient_share,
        objective=args.pretrain_objective or preset.pretrain.objective,
    )
    pretrain.check()
    initargs = (data, settings, ws.sfreq, preset.cohort_epochs, pretrain)
    if args.update_references:
        update_references(args.update_references, data, info, settings, initargs, args.jobs)
        return 0
    print(
        f"target {info['target']}: pool {info['n_pool']} windows ({info['pool_positives']} positive), test "
        f"{info['n_test']} ({info['test_positives']}), cohort {info['n_cohort']}; {len(args.strategies)} "
        f"strategies x {len(seeds)} seeds, {settings.rounds()} rounds of {settings.batch_size}",
        flush=True,
    )
    warm_names = (args.warm_strategies or args.strategies) if args.warm_start else []
    run = Run(args, argv, info, settings, preset, seeds, started, data_seconds)
    reference_seeds = seeds[: args.reference_seeds or len(seeds)]
    first = [(kind, kind, s, None) for kind in ("full", "matched") for s in reference_seeds]
    stored = {} if args.references_from is None else stored_references(args.references_from, info)
    first = first if not stored else []
    first += [("replay", n, s, None) for n in args.strategies for s in seeds]
    first += [("replay", n + CONSISTENT, s, None) for n in args.strategies for s in seeds if args.consistency]
    first += [("cohort", "cohort", s, None) for s in seeds if warm_names]
    encoder_job = "pretrain" + (COHORT if args.pretrain_cohort else "")
    first += [("pretrain", encoder_job, s, None) for s in seeds if args.pretrain]
    done = stored | run_jobs(first, args.jobs, initargs)
    run.cold_wall = max(v["finished"] for k, v in done.items() if k[0] not in ("cohort", "pretrain"))
    run.write(done, [], final=False)  # the cold comparison survives an interrupted later phase
    later = []
    if warm_names:
        cohort = {s: done[("cohort", "cohort", s)]["result"] for s in seeds}
        later += [("replay", n + WARM, s, cohort[s]) for n in warm_names for s in seeds]
    if args.pretrain:
        encoders = {s: done[("pretrain", encoder_job, s)]["result"] for s in seeds}
        later += [("replay", n + PRETRAIN, s, encoders[s].state) for n in args.strategies for s in seeds]
        if args.cold_embeddings:
            later += [("replay", n + PRETRAIN + EMBED, s, encoders[s].state) for n in args.strategies for s in seeds]
        if args.consistency:
            later += [
                ("replay", n + PRETRAIN + CONSISTENT, s, encoders[s].state) for n in args.strategies for s in seeds
            ]
        later += [("cohort", "cohort" + PRETRAIN, s, encoders[s].state) for s in seeds if warm_names]
    done |= run_jobs(later, args.jobs, initargs)
    if args.pretrain and warm_names:
        cohort = {s: done[("cohort", "cohort" + PRETRAIN, s)]["result"] for s in seeds}
        both = [("replay", n + WARM + PRETRAIN, s, cohort[s]) for n in warm_names for s in seeds]
        done |= run_jobs(both, args.jobs, initargs)
    run.pretrain = pretrain if args.pretrain else None
    run.write(done, warm_names, final=True)
    return 0


def pretraining_report(done: dict[tuple, dict], params: PretrainParams) -> dict[str, Any]:
    """The pretraining's parameters and data, and per seed its seconds and its loss at the start and the end."""
    per_seed, data = {}, "the target's pool and test windows, unlabeled"
    if any(key[0] == "pretrain" and key[1].endswith(COHORT) for key in done):
        data = "the target's pool and test windows and the cohort's, unlabeled"
    for key, value in done.items():
        if key[0] == "pretrain":
            losses = value["result"].losses
            per_seed[str(key[2])] = {
                "seconds": round(value["seconds"], 1),
                "loss_first_10": float(np.mean(losses[:10])),
                "loss_last_10": float(np.mean(losses[-10:])),
            }
    return {"params": asdict(params), "data": data, "per_seed": per_seed}


@dataclass
class Run:
    """What one benchmark run reports (see :meth:`write`)."""

    args: argparse.Namespace
    argv: list[str] | None
    info: dict
    settings: ReplaySettings
    preset: Preset
    seeds: list[int]
    started: float
    data_seconds: float
    cold_wall: float = float("nan")
    pretrain: PretrainParams | None = None

    def result(self, done: dict[tuple, dict], warm_names: list[str]) -> dict[str, Any]:
        args, seeds, settings = self.args, self.seeds, self.settings
        full = {k[2]: v["result"] for k, v in done.items() if k[0] == "full"}
        matched = {k[2]: v["result"] for k, v in done.items() if k[0] == "matched"}
        names = list(args.strategies) + [n + WARM for n in warm_names]
        names += [n + CONSISTENT for n in args.strategies if args.consistency]
        if self.pretrain is not None:
            names += [n + PRETRAIN for n in args.strategies] + [n + WARM + PRETRAIN for n in warm_names]
            names += [n + PRETRAIN + EMBED for n in args.strategies if args.cold_embeddings]
            names += [n + PRETRAIN + CONSISTENT for n in args.strategies if args.consistency]
        curves = {n: {s: done[("replay", n, s)]["result"] for s in seeds} for n in names}
        summary = summarize(curves, full)
        return {
            "command": "python -m benchmarks.replay " + " ".join(self.argv if self.argv is not None else sys.argv[1:]),
            "data": self.info | {"source": str(args.windowset or args.recordings or "synthetic")},
            "settings": asdict(settings)
            | {"cohort_epochs": self.preset.cohort_epochs, "reach": REACH, "matched_epochs": settings.matched_epochs()},
            "seeds": seeds,
            "strategies": list(args.strategies),
            "warm_strategies": list(warm_names),
            "pretraining": None if self.pretrain is None else pretraining_report(done, self.pretrain),
            "references_from": None if args.references_from is None else str(args.references_from),
            "full_supervised": _reference(full),  # converged: the ceiling that "95 %" refers to
            "compute_matched": _reference(matched),
            "curves": {n: {str(s): c for s, c in by_seed.items()} for n, by_seed in curves.items()},
            "summary": summary,
            "targets": targets(summary, list(warm_names), settings.budget, curves),
            "wall_seconds": time.perf_counter() - self.started,
            "jobs": args.jobs,
            "wall_seconds_data": self.data_seconds,
            "wall_seconds_cold_comparison": self.cold_wall,  # reference + every cold replay, data loading excluded
            "job_seconds": {" ".join(map(str, key)): round(v["seconds"], 1) for key, v in done.items()},
            "machine": {
                "processor": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "load_average_at_end": list(os.getloadavg()),
            },
        }

    def write(self, done: dict[tuple, dict], warm_names: list[str], final: bool) -> None:
        """The JSON and the PNG; the table and the targets printed when ``final``."""
        result, out = self.result(done, warm_names), self.args.out
        save_result(result, out, report=final)
        if final:
            print(f"wall time {result['wall_seconds']:.0f} s; wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    raise SystemExit(main())
