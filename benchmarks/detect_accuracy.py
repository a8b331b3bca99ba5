"""Whole-recording detection, measured against the truth: event F1 and per-contact spike rates on synthetic patients.

For each synthetic patient (:data:`converters.synthetic.PATIENTS`), a training recording and a separate test
recording (another seed: other background, other spike times) go through the real pipeline (EDF+ -> window store,
1-s windows) with their truth (``events.tsv``). The models:

* the serving model of a replay of the labeling loop (:func:`ls_backend.replay.replay`, strategy "mixed", the
  oracle labeling windows of the training recording) after ``--labels`` (50, 100, 200) labels;
* full supervision: every training window labeled, trained to convergence
  (:func:`ls_backend.replay.fit_converged`, the replay benchmark's ceiling);
* the classical detector (:class:`~ls_backend.detect.scoring.TransientScorer`, threshold 0.5): the floor.

With ``--pretrain`` the replay's first model starts from an encoder pretrained (self-supervised,
:mod:`ls_backend.model.pretrain`) on both recordings' window stores, unlabeled, as the backend does after an import.

Each scores the whole test recording (:func:`~ls_backend.detect.scoring.detect_store`, at the model's threshold).
Measures (see :func:`score_events`): event precision, recall and F1 (a detection matches a true spike when its peak
is within 100 ms of the true peak and a derivation of the spike's main contact is among its channels; one-to-one,
closest in time first); the Spearman correlation between per-channel detected rates (each event on its peak
channel) and true rates (each spike on its main derivation); whether the most active channels agree.

    python -m benchmarks.detect_accuracy --seeds 1 --jobs 2       # A-D (about 20 minutes on 2 cores)
    python -m benchmarks.detect_accuracy --patients B --seeds 3
    python -m benchmarks.detect_accuracy --patients B D --model channel_pool=lse   # another model setting
    python -m benchmarks.detect_accuracy --patients B D --pretrain --pretrain-objective neighbours
    python -m benchmarks.detect_accuracy --quick --out /tmp/detect_accuracy.json     # tiny, for CI

Writes ``--out`` (JSON: settings, per patient, seed and model the scores, the targets, machine) and the PNG next to
it, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.replay import QUICK as REPLAY_QUICK
from benchmarks.replay import add_model_option, add_pretrain_objective_option
from ls_backend.loop import Plan
from ls_backend.model.pretrain import PretrainParams

if TYPE_CHECKING:
    from converters.windows import WindowStore
    from ls_backend.detect.events import Event

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "detect_accuracy.json"
CACHE = HERE / "_data" / "detect_accuracy"
STRATEGY = "mixed"
MATCH_SECONDS = 0.1  # a detection's peak within this of the true peak
PEAK_SEARCH_SECONDS = 0.01  # the main derivation: largest deflection within this of the true peak
TOP_CHANNELS = 3
TEST_SEED_OFFSET = 1000  # the test recording's profile seed: the patient's + this
MAX_CURVE_WINDOWS = 400  # test windows of the replay's own learning curve (window AUPRC), spread over the recording
CLASSICAL, FULL_SUPERVISION = "classical", "full supervision"
TARGETS = {"labels": 200, "f1": 0.8, "rate_correlation": 0.9}


@dataclass(frozen=True)
class Preset:
    """Recording lengths and training effort (``--quick`` for CI, else the measured run)."""

    train_minutes: float
    test_minutes: float
    patients: tuple[str, ...]
    labels: tuple[int, ...]
    batch_size: int
    plan: Plan
    reference_epochs: int
    pretrain: PretrainParams
    pretrained: bool = False  # --pretrain: the replay's first model starts from the pretrained encoder


FULL = Preset(20.0, 30.0, ("A", "B", "C", "D"), (50, 100, 200), 25, Plan(model={"n_threads": 1}), 100, PretrainParams())
QUICK = Preset(1.5, 1.0, ("C",), (8, 16), 8, REPLAY_QUICK.plan, 3, REPLAY_QUICK.pretrain)


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Recording:
    """A converted synthetic recording: its window store and its truth (``events.tsv``)."""

    patient: str
    role: str  # "train" or "test"
    store: Path
    events: Path


def synthetic_recording(cache: Path, patient: str, role: str, minutes: float) -> Recording:
    """Patient ``patient``'s ``role`` recording (the test one with another seed), converted to a store of 1-s windows
    with its truth, cached in ``cache``."""
    from converters.convert import convert_recording
    from converters.synthetic import PATIENTS, make_events, write_edf, write_events_tsv
    from converters.windows import WindowParams

    profile = PATIENTS[patient]
    if role == "test":
        profile = profile.with_(seed=profile.seed + TEST_SEED_OFFSET)
    stem = f"{patient}_{role}_seed{profile.seed}_{minutes:g}min"
    recording = Recording(patient, role, cache / f"{stem}.h5", cache / f"{stem}_events.tsv")
    if recording.store.exists() and recording.events.exists():
        return recording
    cache.mkdir(parents=True, exist_ok=True)
    seconds = minutes * 60.0
    with tempfile.TemporaryDirectory(prefix="detect-accuracy-") as tmp:
        edf = write_edf(Path(tmp) / f"{stem}.edf", profile, seconds)
        convert_recording(edf, recording.store, window_params=WindowParams(1.0))
    write_events_tsv(recording.events, make_events(profile, np.ceil(seconds)))
    return recording


# ---------------------------------------------------------------------------------------------- truth and scores


@dataclass(frozen=True)
class TrueSpike:
    """A true spike of a test recording: its peak (s), the derivations of its main contact (a bipolar montage shows
    the contact on both of its neighbours), the one where it is largest, and the derivations of all its contacts."""

    peak: float
    main: frozenset[str]
    main_channel: str
    involved: frozenset[str]


def derivations_of(ch_names: list[str], contact: str) -> list[str]:
    """The store's channels that hold ``contact`` (``A2`` -> ``A1-A2``, ``A2-A3``; a monopolar ``A2`` itself)."""
    return [name for name in ch_names if contact in name.split("-")]


def true_spikes(store: WindowStore, events_tsv: Path) -> list[TrueSpike]:
    """The spikes of ``events_tsv`` on the channels of ``store`` (artifacts left out)."""
    from converters.synthetic import read_events_tsv

    signal, sfreq = store.file["signal"], store.sfreq
    half = max(1, round(PEAK_SEARCH_SECONDS * sfreq))
    spikes = []
    for event in read_events_tsv(events_tsv):
        if not event.is_spike:
            continue
        main = derivations_of(store.ch_names, event.channels[0])
        if not main:
            raise ValueError(f"{events_tsv}: contact {event.channels[0]} is on no channel of {store.path}")
        centre = round(event.peak_seconds * sfreq)
        rows = [store.ch_names.index(name) for name in main]
        around = np.abs(signal[min(rows) : max(rows) + 1, max(0, centre - half) : centre + half + 1])
        largest = main[int(np.argmax(around[[r - min(rows) for r in rows]].max(axis=1)))]
        involved = {name for contact in event.channels for name in derivations_of(store.ch_names, contact)}
        spikes.append(TrueSpike(event.peak_seconds, frozenset(main), largest, frozenset(involved)))
    return spikes


def match_events(events: list[Event], truth: list[TrueSpike], tolerance: float = MATCH_SECONDS) -> list[tuple]:
    """One-to-one (event index, spike index) pairs: peaks within ``tolerance`` and a derivation of the spike's main
    contact among the event's channels, the closest pairs in time first."""
    true_peaks = np.array([t.peak for t in truth])
    order = np.argsort(true_peaks)
    sorted_peaks = true_peaks[order]
    candidates = []
    for i, event in enumerate(events):
        lo, hi = np.searchsorted(sorted_peaks, [event.peak - tolerance, event.peak + tolerance], side="left")
        for j in order[lo:hi]:
            gap = abs(event.peak - true_peaks[j])
            if gap <= tolerance and truth[j].main & event.channels.keys():
                candidates.append((gap, i, int(j)))
    used_events, used_spikes, pairs = set(), set(), []
    for _, i, j in sorted(candidates):
        if i not in used_events and j not in used_spikes:
            used_events.add(i)
            used_spikes.add(j)
            pairs.append((i, j))
    return pairs


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; NaN when either is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def top_channels(rates: np.ndarray, ch_names: list[str], k: int) -> list[str]:
    """The ``k`` channels of highest rate (ties in channel order)."""
    return [ch_names[i] for i in np.argsort(-rates, kind="stable")[:k]]


def score_events(events: list[Event], truth: list[TrueSpike], ch_names: list[str], minutes: float) -> dict[str, Any]:
    """Event precision, recall, F1; per-channel rates (events per minute) and their agreement with the truth.

    ``rate_correlation``: Spearman over the channels of detected (each event on its peak channel) vs true rates
    (each spike on its main derivation); ``rate_correlation_involved``: the same with each event counted on every
    channel it involves and each spike on every derivation of its contacts. ``top_agree``: the channels of highest
    detected rate are those of highest true rate, over the ``min(3, channels with a true spike)`` first."""
    pairs = match_events(events, truth)
    n_matched = len(pairs)
    precision = n_matched / len(events) if events else 0.0
    recall = n_matched / len(truth) if truth else float("nan")
    f1 = 2 * n_matched / (len(events) + len(truth)) if events or truth else float("nan")
    index = {name: i for i, name in enumerate(ch_names)}
    detected, true = np.zeros(len(ch_names)), np.zeros(len(ch_names))
    detected_involved, true_involved = np.zeros(len(ch_names)), np.zeros(len(ch_names))
    for event in events:
        detected[index[event.peak_channel]] += 1
        detected_involved[[index[c] for c in event.channels]] += 1
    for spike in truth:
        true[index[spike.main_channel]] += 1
        true_involved[[index[c] for c in spike.involved]] += 1
    k = min(TOP_CHANNELS, int((true > 0).sum()))
    top_true, top_detected = top_channels(true, ch_names, k), top_channels(detected, ch_names, k)
    errors = [abs(events[i].peak - truth[j].peak) * 1000 for i, j in pairs]
    return {
        "n_detected": len(events),
        "n_true": len(truth),
        "n_matched": n_matched,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "peak_error_ms_median": float(np.median(errors)) if errors else float("nan"),
        "rate_correlation": spearman(detected, true),
        "rate_correlation_involved": spearman(detected_involved, true_involved),
        "top_true": top_true,
        "top_detected": top_detected,
        "top_agree": set(top_true) == set(top_detected),
        "detected_per_minute": dict(zip(ch_names, np.round(detected / minutes, 3).tolist())),
        "true_per_minute": dict(zip(ch_names, np.round(true / minutes, 3).tolist())),
    }


# ---------------------------------------------------------------------------------------------- one patient


def replay_data(train: Recording, test: Recording) -> tuple[Any, float]:
    """The replay's data: every window of the training recording is the pool; the learning curve's test windows are
    at most ``MAX_CURVE_WINDOWS`` of the test recording, evenly spread."""
    from converters.windows import WindowStore
    from converters.windowset import windowset_from_store
    from ls_backend.replay import ReplayData

    with WindowStore(train.store) as store:
        pool = windowset_from_store(store)
    with WindowStore(test.store) as store:
        held = windowset_from_store(store)
    pick = np.unique(np.linspace(0, len(held) - 1, min(len(held), MAX_CURVE_WINDOWS)).round().astype(np.int64))
    return ReplayData(pool.X, pool.y, held.X[pick], held.y[pick], pool.y_dense), pool.sfreq


def evaluate_patient(train: Recording, test: Recording, seed: int, preset: Preset) -> dict[str, Any]:
    """Train the models of one patient and seed on ``train``, detect on ``test`` with each, and score them."""
    from converters.windows import WindowStore
    from ls_backend.detect.scoring import ModelScorer, TransientScorer, detect_store
    from ls_backend.replay import ReplaySettings, fit_converged, replay

    started = time.perf_counter()
    data, sfreq = replay_data(train, test)
    plan, pretrain_seconds = preset.plan, 0.0
    if preset.pretrained:
        encoder = pretrained_encoder(train, test, preset, seed)
        plan, pretrain_seconds = replace(plan, encoder=encoder.state), encoder.seconds
    settings = ReplaySettings(preset.batch_size, max(preset.labels), plan, preset.reference_epochs)
    settings.check(data.n_pool)
    kept: dict[int, tuple[int, Any]] = {}  # a round never changes a model it hands over: references suffice

    def keep(labels: int, model: Any) -> None:
        for wanted in preset.labels:
            if labels >= wanted and wanted not in kept:
                kept[wanted] = (labels, model)

    curve = replay(STRATEGY, data, settings, seed, sfreq, on_round=keep)
    replay_seconds = time.perf_counter() - started
    full, _ = fit_converged(data, settings, seed)  # never from the encoder: the same ceiling either way
    models = [(f"{labels} labels", labels, model) for labels, model in kept.values()]
    models.append((FULL_SUPERVISION, data.n_pool, full))
    rows = []
    with WindowStore(test.store) as store:
        truth = true_spikes(store, test.events)
        minutes = store.file["signal"].shape[1] / store.sfreq / 60
        scorers: list[tuple[str, int, Any, float]] = [
            (name, labels, ModelScorer(model, name), model.threshold) for name, labels, model in models
        ]
        scorers.append((CLASSICAL, 0, TransientScorer.for_store(store), 0.5))
        for name, labels, scorer, threshold in scorers:
            start = time.perf_counter()
            events = detect_store(store, scorer, threshold)
            scores = score_events(events, truth, store.ch_names, minutes)
            rows.append({"model": name, "labels": labels, "threshold": threshold, **scores,
                         "detect_seconds": time.perf_counter() - start})  # fmt: skip
    print(
        f"  patient {train.patient} seed {seed}: "
        + ", ".join(f"{r['model']} F1 {r['f1']:.2f}" for r in rows)
        + f" ({time.perf_counter() - started:.0f} s)",
        file=sys.stderr,
        flush=True,
    )
    return {
        "patient": train.patient,
        "seed": seed,
        "pool_windows": data.n_pool,
        "pool_positives": int((data.pool_y >= 0.5).sum()),
        "test_minutes": minutes,
        "n_true": len(truth),
        "curve": [r.to_dict() for r in curve],
        "rows": rows,
        "replay_seconds": replay_seconds,
        "pretrain_seconds": pretrain_seconds,
        "seconds": time.perf_counter() - started,
    }


def pretrained_encoder(train: Recording, test: Recording, preset: Preset, seed: int) -> Any:
    """The encoder pretrained on both recordings' window stores (no labels), as the backend does after an import."""
    from converters.windows import WindowStore
    from ls_backend.model.pretrain import pretrain_from_stores

    with WindowStore(train.store) as a, WindowStore(test.store) as b:
        return pretrain_from_stores([a, b], preset.plan.model, preset.pretrain, seed, a.sfreq)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run_job(job: tuple[Recording, Recording, int, Preset]) -> dict[str, Any]:
    return evaluate_patient(*job)


def run_jobs(
    jobs: list[tuple], n_workers: int, run_job: Callable[[tuple], dict[str, Any]] = _run_job
) -> list[dict[str, Any]]:
    """Every (train, test, seed, preset) job through ``run_job`` (a module-level function), in ``n_workers``
    processes of one torch thread (inline when 1)."""
    if n_workers <= 1:
        _init_worker()
        return [run_job(job) for job in jobs]
    ctx = get_context("spawn")  # no fork after torch started its threads
    with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker) as pool:
        return list(pool.map(run_job, jobs))


# ---------------------------------------------------------------------------------------------- summary


def summarize(results: list[dict]) -> dict[str, dict[str, dict]]:
    """Per patient and model: the mean over seeds of F1, precision, recall, rate correlations, and the fraction of
    seeds whose top channels agree."""
    summary: dict[str, dict[str, dict]] = {}
    for patient in dict.fromkeys(r["patient"] for r in results):
        rows = [row for r in results if r["patient"] == patient for row in r["rows"]]
        entry = {}
        for model in dict.fromkeys(row["model"] for row in rows):
            own = [row for row in rows if row["model"] == model]
            entry[model] = {
                "labels": own[0]["labels"],
                **{key: finite_mean([row[key] for row in own])
                   for key in ("precision", "recall", "f1", "rate_correlation", "rate_correlation_involved")},
                "top_agree_fraction": float(np.mean([row["top_agree"] for row in own])),
                "n_seeds": len(own),
            }  # fmt: skip
        summary[patient] = entry
    return summary


def finite_mean(values: list[float]) -> float:
    """The mean of the finite values (NaN when none is)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def targets(summary: dict[str, dict[str, dict]]) -> dict[str, Any]:
    """The issue's targets after 200 labels, per patient (seed means; top channels on every seed)."""
    name = f"{TARGETS['labels']} labels"
    per_patient = {}
    for patient, models in summary.items():
        if name not in models:
            continue
        s = models[name]
        per_patient[patient] = {
            "f1": s["f1"],
            "f1_met": s["f1"] >= TARGETS["f1"],
            "rate_correlation": s["rate_correlation"],
            "rate_correlation_met": s["rate_correlation"] >= TARGETS["rate_correlation"],
            "top_agree": s["top_agree_fraction"] == 1.0,
        }
    met = bool(per_patient) and all(
        p["f1_met"] and p["rate_correlation_met"] and p["top_agree"] for p in per_patient.values()
    )
    return {"targets": TARGETS, "per_patient": per_patient, "all_met": met}


# ---------------------------------------------------------------------------------------------- report


def table(result: dict) -> str:
    lines = [
        "| patient | model | labels | precision | recall | F1 | rate corr. | rate corr. (involved) | top agree |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for patient, models in result["summary"].items():
        for model, s in models.items():
            lines.append(
                f"| {patient} | {model} | {s['labels']} | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | "
                f"{s['rate_correlation']:.2f} | {s['rate_correlation_involved']:.2f} | "
                f"{s['top_agree_fraction'] * s['n_seeds']:.0f}/{s['n_seeds']} |"
            )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("f1", "event F1"), ("rate_correlation", "rate correlation (Spearman)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 4.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, label) in zip(axes[0], metrics):
        for k, (patient, models) in enumerate(result["summary"].items()):
            color = colors[k % len(colors)]
            replayed = [(s["labels"], s[metric]) for m, s in models.items() if m not in (CLASSICAL, FULL_SUPERVISION)]
            ax.plot(*zip(*sorted(replayed)), "o-", color=color, label=f"patient {patient}: {STRATEGY} replay")
            if FULL_SUPERVISION in models:
                full = models[FULL_SUPERVISION]
                ax.axhline(full[metric], color=color, ls="--", lw=1, label=f"{patient}: full ({full['labels']} labels)")
            if CLASSICAL in models:
                ax.axhline(models[CLASSICAL][metric], color=color, ls=":", lw=1, label=f"{patient}: classical")
        if metric in TARGETS:
            ax.axhline(TARGETS[metric], color="k", lw=0.8, alpha=0.5)
        ax.set_xlabel("labels of the training recording")
        ax.set_ylabel(f"{label} on the test recording")
        ax.set_title(f"{label}: mean over {len(result['seeds'])} seed(s); grey: target")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6.5, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.detect_accuracy",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_options(parser, FULL)
    parser.add_argument("--batch-size", type=int, help=f"windows per replay round (default {FULL.batch_size})")
    add_model_option(parser)
    parser.add_argument(
        "--pretrain",
        action="store_true",
        help="the replay's first model starts from an encoder pretrained on both recordings (unlabeled)",
    )
    add_pretrain_objective_option(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output; the PNG goes next to it")
    return parser


def add_run_options(parser: argparse.ArgumentParser, preset: Preset) -> None:
    """Which patients, seeds and label counts, in how many processes, on which recordings (``--quick``: tiny)."""
    parser.add_argument("--patients", nargs="+", help=f"synthetic patients (default {' '.join(preset.patients)})")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds 0..N-1 (the recordings stay the same)")
    parser.add_argument("--labels", type=int, nargs="+", help=f"labels of the kept models (default {preset.labels})")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--quick", action="store_true", help="tiny recordings, model and budget (CI)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="folder of the converted recordings (reused)")


def check_args(args: argparse.Namespace, preset: Preset) -> Preset:
    """The preset with the command line's changes; one clear error per bad option."""
    from converters.synthetic import PATIENTS

    unknown = [p for p in args.patients or () if p not in PATIENTS]
    if unknown:
        raise SystemExit(f"--patients: unknown {unknown}; the synthetic patients are {', '.join(sorted(PATIENTS))}")
    if args.seeds < 1 or args.jobs < 1:
        raise SystemExit(f"--seeds and --jobs must be at least 1, got {args.seeds} and {args.jobs}")
    labels = tuple(sorted(set(args.labels or preset.labels)))
    if labels[0] < 1:
        raise SystemExit(f"--labels must be positive, got {labels}")
    batch_size = args.batch_size or preset.batch_size
    if batch_size < 1:
        raise SystemExit(f"--batch-size must be positive, got {batch_size}")
    patients = tuple(args.patients or preset.patients)
    plan = replace(preset.plan, model={**preset.plan.model, **args.model})
    pretrain = replace(preset.pretrain, objective=args.pretrain_objective or preset.pretrain.objective)
    pretrain.check()
    return replace(
        preset, patients=patients, labels=labels, batch_size=batch_size, plan=plan, pretrain=pretrain,
        pretrained=args.pretrain,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = check_args(args, QUICK if args.quick else FULL)
    started = time.perf_counter()
    recordings = {
        p: (
            synthetic_recording(args.cache, p, "train", preset.train_minutes),
            synthetic_recording(args.cache, p, "test", preset.test_minutes),
        )
        for p in preset.patients
    }
    data_seconds = time.perf_counter() - started
    seeds = list(range(args.seeds))
    print(f"patients {', '.join(preset.patients)} x {len(seeds)} seed(s); data {data_seconds:.0f} s", flush=True)
    jobs = [(*recordings[p], s, preset) for p in preset.patients for s in seeds]
    results = run_jobs(jobs, min(args.jobs, len(jobs)))
    summary = summarize(results)
    result = {
        "command": "python -m benchmarks.detect_accuracy " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": asdict(preset)
        | {"strategy": STRATEGY, "match_seconds": MATCH_SECONDS, "test_seed_offset": TEST_SEED_OFFSET},
        "seeds": seeds,
        "results": results,
        "summary": summary,
        "targets": targets(summary),
        "wall_seconds": time.perf_counter() - started,
        "wall_seconds_data": data_seconds,
        "jobs": args.jobs,
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_end": list(os.getloadavg()),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    plot(result, args.out.with_suffix(".png"))
    print(table(result))
    print(json.dumps(result["targets"], indent=1))
    print(f"wall time {result['wall_seconds']:.0f} s; wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
