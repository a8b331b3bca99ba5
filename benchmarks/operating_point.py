"""Whole-recording detection when the labels misstate how common spikes are: the prior correction with and without
its bound by the recording's background.

The model's prior correction takes the spikes' prevalence from the clinician's labels. Active learning asks for
spikes, so the labels hold more of them than the recording does, and a briefly trained model keeps its background
windows at a near-constant logit that a correction for spike-rich labels can lift over the threshold: every window a
spike. ``SpikeDetector.background_logit`` bounds the correction so that the median unlabeled window stays at or below
that logit (:meth:`~ls_backend.model.estimator.SpikeDetector.bound_background`).

For each synthetic patient and seed, the replay of :mod:`benchmarks.detect_accuracy` (strategy ``mixed``, the first
model from an encoder pretrained on both recordings, as the backend does) trains with the bound off; each model kept
after ``--labels`` labels then detects over the test recording with the correction of its labels' own prevalence
and of labels half and three quarters spikes, each as it is and bounded by the training recording's windows (the
median window's logit at most -0.5 or -1).

    python -m benchmarks.operating_point --seeds 2 --jobs 2          # A-D, 50 labels (about 20 minutes)
    python -m benchmarks.operating_point --quick --out /tmp/operating_point.json

Writes ``--out`` (JSON) and prints the table: per patient, prevalence and bound, the mean over seeds of the
detections, precision, recall and event F1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import detect_accuracy as accuracy
from ls_backend.model.estimator import prior_offset

DEFAULT_OUT = accuracy.HERE / "results" / "operating_point.json"
BOUNDS = (None, -0.5, -1.0)  # background_logit: None, no bound
PREVALENCES = (None, 0.5, 0.75)  # None: the labels' own
FULL = replace(accuracy.FULL, labels=(50,), pretrained=True)
QUICK = replace(accuracy.QUICK, pretrained=True)


def evaluate_patient(train: accuracy.Recording, test: accuracy.Recording, seed: int, preset: accuracy.Preset) -> dict:
    """Replay one patient and seed with the bound off; detect with each kept model under every correction."""
    from converters.windows import WindowStore
    from ls_backend.detect.scoring import ModelScorer, detect_store
    from ls_backend.replay import ReplaySettings, replay

    started = time.perf_counter()
    data, sfreq = accuracy.replay_data(train, test)
    plan = replace(preset.plan, model={**preset.plan.model, "background_logit": None})
    if preset.pretrained:
        plan = replace(plan, encoder=accuracy.pretrained_encoder(train, test, preset, seed).state)
    settings = ReplaySettings(preset.batch_size, max(preset.labels), plan, preset.reference_epochs)
    settings.check(data.n_pool)
    kept: dict[int, Any] = {}

    def keep(labels: int, model: Any) -> None:
        for wanted in preset.labels:
            if labels >= wanted and wanted not in kept:
                kept[wanted] = model

    replay(accuracy.STRATEGY, data, settings, seed, sfreq, on_round=keep)
    rows = []
    with WindowStore(test.store) as store:
        truth = accuracy.true_spikes(store, test.events)
        minutes = store.file["signal"].shape[1] / store.sfreq / 60
        for labels, model in kept.items():
            own = model.logit_offset_
            for prevalence in PREVALENCES:
                offset = own if prevalence is None else prior_offset(prevalence, model.positive_fraction)
                for bound in BOUNDS:
                    model.logit_offset_ = offset
                    model.set_params(background_logit=bound).bound_background(data.pool_X)
                    scores = accuracy.score_events(
                        detect_store(store, ModelScorer(model, f"{labels} labels"), model.threshold),
                        truth, store.ch_names, minutes,
                    )  # fmt: skip
                    rows.append({
                        "labels": labels, "prevalence": prevalence, "bound": bound,
                        "offset": float(model.logit_offset_), "shift": float(offset - model.logit_offset_),
                        **{key: scores[key] for key in ("n_detected", "n_true", "precision", "recall", "f1")},
                    })  # fmt: skip
            model.logit_offset_ = own
    print(f"  patient {train.patient} seed {seed} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    return {"patient": train.patient, "seed": seed, "rows": rows, "seconds": time.perf_counter() - started}


def _run_job(job: tuple) -> dict[str, Any]:
    return evaluate_patient(*job)


def summarize(results: list[dict]) -> list[dict]:
    """Per patient, labels, prevalence and bound: the means over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        for row in result["rows"]:
            key = (result["patient"], row["labels"], row["prevalence"], row["bound"])
            groups.setdefault(key, []).append(row)
    means = ("n_detected", "precision", "recall", "f1", "shift")
    return [
        {"patient": patient, "labels": labels, "prevalence": prevalence, "bound": bound, "n_seeds": len(rows),
         **{key: float(np.mean([r[key] for r in rows])) for key in means}}
        for (patient, labels, prevalence, bound), rows in groups.items()
    ]  # fmt: skip


def table(summary: list[dict]) -> str:
    lines = [
        "| patient | labels | labels' prevalence | bound | detections | precision | recall | F1 | shift |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        prevalence = "own" if s["prevalence"] is None else f"{s['prevalence']:g}"
        lines.append(
            f"| {s['patient']} | {s['labels']} | {prevalence} | {'none' if s['bound'] is None else s['bound']} | "
            f"{s['n_detected']:.0f} | {s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | {s['shift']:.2f} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.operating_point",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    accuracy.add_run_options(parser, FULL)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.batch_size, args.model, args.pretrain_objective, args.pretrain = None, {}, None, True  # the presets'
    preset = accuracy.check_args(args, QUICK if args.quick else FULL)
    started = time.perf_counter()
    jobs = [
        (accuracy.synthetic_recording(args.cache, p, "train", preset.train_minutes),
         accuracy.synthetic_recording(args.cache, p, "test", preset.test_minutes), s, preset)
        for p in preset.patients for s in range(args.seeds)
    ]  # fmt: skip
    results = accuracy.run_jobs(jobs, min(args.jobs, len(jobs)), _run_job)
    summary = summarize(results)
    result = {
        "command": "python -m benchmarks.operating_point " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": asdict(preset) | {"bounds": BOUNDS, "prevalences": PREVALENCES, "strategy": accuracy.STRATEGY},
        "seeds": list(range(args.seeds)),
        "results": results,
        "summary": summary,
        "wall_seconds": time.perf_counter() - started,
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(table(summary))
    print(f"wall time {result['wall_seconds']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
