"""Spike model benchmarks: speed against the machine's limit, and cross-patient detection quality.

Speed (``--part speed``):
* the machine's limit: float32 and bfloat16 matrix-multiply rate on 1 and 2 threads;
* the bare network's inference rate (channel-windows/s) against batch size, threads and precision, for the default
  model and the reference model (8 blocks, 64 wide, kernel 7), with the fraction of the matmul
  rate reached (FLOPs per window are counted analytically). Two forms: ``inference``, what ``SpikeDetector`` runs
  (:func:`~ls_backend.model.resnet1d.inference_network`; with 2 threads, two single-threaded streams of batches),
  and ``plain``, the training network in eval mode (BatchNorm unfolded, 2 threads = PyTorch's intra-op threads);
* the estimator end to end (``predict_proba`` and ``predict_all`` on multi-channel windows, aggregation included)
  and training time per epoch; the cost of scoring a 3-day, 24-channel recording.

Transfer (``--part transfer``): a cohort model trained on synthetic patients A-C is tested on held-out windows of
patient D with 0, 50 and 200 randomly chosen labels of D: the cohort model as it is (0), fine-tuned from the cohort
(warm), trained on D's labels alone (cold), and what :func:`ls_backend.model.training.warm_start` picks when it
holds back 30 % of the labels to decide.

    python -m benchmarks.bench_model                  # both parts (about 10 minutes on 2 cores)
    python -m benchmarks.bench_model --part speed --quick

Writes ``benchmarks/results/model.json`` and ``model.png``; prints tables. Timings are best of a few repeats; the
second core of these machines is unreliable, so 1-thread figures are the stable baseline.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from converters.windowset import synthetic_windowset
from ls_backend.model import ResNet1d, SpikeDetector, flops_per_window
from ls_backend.model.metrics import evaluate
from ls_backend.model.resnet1d import inference_network
from ls_backend.model.streams import map_in_streams, num_threads, retain_freed_memory
from ls_backend.model.training import warm_start

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "model.json"
CACHE = HERE / "_data" / "windowsets"
# the reference model: 236 MFLOP per 256-sample window
REFERENCE = {"width": 64, "depth": 8, "kernel_size": 7, "dilation": 1}
# plotted speed curves: form, threads, precision, line style
CURVES = [
    ("inference", 1, "float32", "o-"),
    ("inference", 2, "float32", "s-"),
    ("plain", 1, "float32", "o:"),
    ("plain", 2, "float32", "s:"),
    ("inference", 2, "bfloat16", "^--"),
]


def best_seconds(fn, repeats: int = 3, budget_seconds: float = 1.0) -> float:
    """Fastest of at least ``repeats`` calls, repeating short calls until ``budget_seconds`` are spent (at most
    100): the cores' caches are shared with other tenants, and the fastest call is the one they left alone."""
    return alternating_best({"fn": fn}, repeats, budget_seconds)["fn"]


def alternating_best(fns: dict, repeats: int = 3, budget_seconds: float = 1.0) -> dict:
    """Fastest call of each function, calling them in turn (at least ``repeats`` rounds, then until
    ``budget_seconds`` are spent, at most 100 rounds): a rate and the limit it is compared with see the same load
    from other tenants."""
    for fn in fns.values():
        fn()  # warm-up (allocations, oneDNN primitive creation)
    best, spent, n = dict.fromkeys(fns, np.inf), 0.0, 0
    while n < repeats or (spent < budget_seconds and n < 100):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            best[key], spent = min(best[key], elapsed), spent + elapsed
        n += 1
    return best


def matmul(dtype: torch.dtype, threads: int, n: int = 1024) -> tuple[Callable[[], None], float]:
    """A square matrix product on ``threads`` threads and its FLOPs."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)

    def call() -> None:
        with num_threads(threads):
            torch.matmul(a, b, out=out)

    return call, 2.0 * n**3


def network_call(module: torch.nn.Module, batch: int, n_times: int, precision: str, threads: int, streams: int):
    """One call of the bare network on 2 batches per stream (``streams`` > 1: in parallel, as
    :func:`~ls_backend.model.streams.map_in_streams` runs them; else ``threads`` intra-op threads), each stream on
    its own reused input; and the channel-windows it scores."""
    inputs = [torch.randn(batch, 1, n_times) for _ in range(streams)]

    def forward(i: int) -> None:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16"):
            module(inputs[i % streams])

    def call() -> None:
        with num_threads(threads):
            list(map_in_streams(forward, range(2 * streams), streams))

    return call, 2 * streams * batch


def speed(args: argparse.Namespace, default: dict) -> dict:
    n_times = 256
    result: dict = {"matmul_gflops": {}, "network": [], "estimator": {}}
    result["retain_freed_memory"] = retain_freed_memory()  # as SpikeDetector does: no page faults between passes
    for threads in (1, 2):
        for name, dtype, n in (("float32", torch.float32, 1024), ("bfloat16", torch.bfloat16, 256)):
            call, flop = matmul(dtype, threads, n)
            result["matmul_gflops"][f"{name}_{threads}t"] = flop / best_seconds(call, 5) / 1e9
    print("matmul GFLOP/s:", {k: round(v, 1) for k, v in result["matmul_gflops"].items()}, flush=True)
    # without AVX-512 BF16 / AMX, CPU bfloat16 kernels are emulated and many times slower than float32
    bf16_native = result["matmul_gflops"]["bfloat16_1t"] > result["matmul_gflops"]["float32_1t"]
    result["bf16_native"] = bf16_native
    precisions = ("float32", "bfloat16") if bf16_native else ("float32",)
    if not bf16_native:
        print("bfloat16 is emulated on this CPU (no avx512_bf16/amx): bfloat16 rows skipped", flush=True)
    batches = [64, 256] if args.quick else [16, 32, 64, 128, 256, 512]
    models = {"default": default, "reference": REFERENCE}
    for label, arch in models.items():
        torch.manual_seed(0)
        plain = ResNet1d(1, arch["width"], arch["depth"], arch["kernel_size"], arch["dilation"]).eval()
        forms = {"inference": inference_network(plain), "plain": plain}
        flops = flops_per_window(n_times, arch["width"], arch["depth"], arch["kernel_size"])
        for form, module in forms.items():
            for threads in (1, 2):
                streams = threads if form == "inference" else 1
                for precision in precisions:
                    limit_call, limit_flop = matmul(
                        getattr(torch, precision), threads, 1024 if precision == "float32" else 256
                    )
                    for batch in batches:
                        call, n_scored = network_call(module, batch, n_times, precision, threads, streams)
                        best = alternating_best({"network": call, "limit": limit_call}, 3, 2.0)
                        rate, limit = n_scored / best["network"], limit_flop / best["limit"] / 1e9
                        row = {
                            "model": label,
                            **arch,
                            "form": form,
                            "threads": threads,
                            "precision": precision,
                            "batch": batch,
                            "channel_windows_per_second": rate,
                            "mflop_per_channel_window": flops / 1e6,
                            "gflops": rate * flops / 1e9,
                            "matmul_gflops": limit,
                        }
                        row["fraction_of_matmul"] = row["gflops"] / limit
                        result["network"].append(row)
                        print(
                            f"{label:9s} {form:9s} {threads}t {precision:8s} batch {batch:3d}: {rate:8.0f} ch-win/s"
                            f" {row['gflops']:6.1f} GFLOP/s = {row['fraction_of_matmul']:.0%} of matmul"
                            f" ({limit:.0f} GFLOP/s alongside)",
                            flush=True,
                        )
    # the estimator end to end on multi-channel windows (default model, 2 threads and 1 thread)
    ws = synthetic_windowset(("A", "B", "C"), minutes=5.0, cache_dir=CACHE)
    torch.set_num_threads(args.threads)
    det = SpikeDetector(**default, epochs=1, samples_per_epoch=512, seed=0)
    start = time.perf_counter()
    det.fit(ws.X, ws.y, dense_targets=ws.y_dense)
    train_seconds = time.perf_counter() - start
    sub = ws.subset(np.arange(0, len(ws), 3))  # 300 windows of A-C for the inference timings
    n_chan_windows = int(np.isfinite(sub.X[:, :, 0]).sum())
    est = {
        "train_seconds_per_1000_windows": train_seconds / 512 * 1000,
        "train_threads": torch.get_num_threads(),
        "n_windows": len(sub),
        "channel_windows": n_chan_windows,
    }
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t_proba = best_seconds(lambda: det.predict_proba(sub.X), 2)
        t_all = best_seconds(lambda: det.predict_all(sub.X), 2)
        est[f"predict_proba_channel_windows_per_second_{threads}t"] = n_chan_windows / t_proba
        est[f"predict_all_channel_windows_per_second_{threads}t"] = n_chan_windows / t_all
        if bf16_native:
            det.set_params(precision="bfloat16")
            t_bf16 = best_seconds(lambda: det.predict_proba(sub.X), 2)
            det.set_params(precision="float32")
            est[f"predict_proba_bf16_channel_windows_per_second_{threads}t"] = n_chan_windows / t_bf16
    # a 3-day recording with 24 contacts per shaft-pair montage -> about 22 bipolar derivations, 1 s windows
    three_days = 3 * 24 * 3600 * 22
    est["three_day_24ch_minutes_1t"] = three_days / est["predict_proba_channel_windows_per_second_1t"] / 60
    est["three_day_24ch_minutes_2t"] = three_days / est["predict_proba_channel_windows_per_second_2t"] / 60
    result["estimator"] = est
    print("estimator:", {k: round(v, 1) for k, v in est.items()}, flush=True)
    return result


def transfer(args: argparse.Namespace, default: dict) -> dict:
    torch.set_num_threads(args.threads)
    minutes_d = 8.0 if args.quick else 20.0
    ws = synthetic_windowset(
        ("A", "B", "C", "D"), minutes={"A": 5.0, "B": 5.0, "C": 5.0, "D": minutes_d}, cache_dir=CACHE
    )
    cohort_set = ws.group("A", "B", "C")
    d = ws.group("D")
    n_pool = int(0.6 * len(d))
    pool, test = d.subset(np.arange(n_pool)), d.subset(np.arange(n_pool, len(d)))
    train_params = dict(epochs=4 if args.quick else 15, samples_per_epoch=256)
    # the same number of updates for every model trained on D's labels, whatever the number of labels
    patient_params = dict(epochs=3 if args.quick else 8, samples_per_epoch=256)
    start = time.perf_counter()
    cohort = SpikeDetector(**default, **train_params, seed=0).fit(
        cohort_set.X, cohort_set.y, dense_targets=cohort_set.y_dense
    )
    cohort_seconds = time.perf_counter() - start
    print(
        f"cohort A-C: {len(cohort_set)} windows, fit {cohort_seconds:.0f} s; D: pool {len(pool)} windows "
        f"({int(pool.y.sum())} positive), test {len(test)} ({int(test.y.sum())} positive)",
        flush=True,
    )

    def score(model: SpikeDetector) -> dict:
        out = model.predict_all(test.X)
        return evaluate(test.y, out["proba"], 0.5, out["dense"], test.y_dense, test.sfreq).to_dict()

    rows = [{"labels": 0, "seed": 0, "mode": "cohort", **score(cohort)}]
    print(f"0 labels, cohort: AUPRC {rows[0]['auprc']:.3f}", flush=True)
    fine_tune = {"lr": 1e-3, **patient_params}
    for n_labels in args.labels:
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            while True:  # random labelling, redrawn until it holds a positive (else nothing can be learnt)
                pick = rng.choice(len(pool), n_labels, replace=False)
                if pool.y[pick].sum() > 0:
                    break
            lab = pool.subset(np.sort(pick))
            cold = SpikeDetector(**default, **patient_params, seed=seed).fit(lab.X, lab.y, dense_targets=lab.y_dense)
            warm = cohort.clone(seed=seed, **fine_tune).fit(lab.X, lab.y, dense_targets=lab.y_dense, init_from=cohort)
            for mode, model in (("cold", cold), ("warm", warm)):
                rows.append(
                    {"labels": n_labels, "seed": seed, "mode": mode, "n_positive": int(lab.y.sum()), **score(model)}
                )
            # the automatic choice, deciding on 30 % of the labels held back
            split = np.random.default_rng(seed + 100).permutation(n_labels)
            n_val = int(0.3 * n_labels)
            fit_part, val_part = lab.subset(np.sort(split[n_val:])), lab.subset(np.sort(split[:n_val]))
            auto = warm_start(
                cohort,
                fit_part.X,
                fit_part.y,
                val_part.X,
                val_part.y,
                dense=fit_part.y_dense,
                fine_tune=fine_tune,
                cold_params=patient_params,
            )
            rows.append(
                {
                    "labels": n_labels,
                    "seed": seed,
                    "mode": f"auto:{auto.choice}",
                    "n_positive": int(lab.y.sum()),
                    **score(auto.model),
                }
            )
            print(
                f"{n_labels} labels ({int(lab.y.sum())} positive), seed {seed}: "
                + ", ".join(f"{r['mode']} {r['auprc']:.3f}" for r in rows[-3:]),
                flush=True,
            )
    return {
        "cohort_fit_seconds": cohort_seconds,
        "n_pool": len(pool),
        "n_test": len(test),
        "test_prevalence": float(test.y.mean()),
        "train_params": train_params,
        "fine_tune": fine_tune,
        "rows": rows,
    }


def transfer_table(result: dict) -> str:
    lines = [
        "| labels of D | model | AUPRC | best F1 | F1@0.5 | event sensitivity | FP/h |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    modes = []
    for r in result["rows"]:
        key = (r["labels"], r["mode"].split(":")[0])
        if key not in modes:
            modes.append(key)
    for labels, mode in modes:
        rs = [r for r in result["rows"] if r["labels"] == labels and r["mode"].split(":")[0] == mode]
        mean = {
            k: np.mean([r[k] for r in rs])
            for k in ("auprc", "best_f1", "f1_at_threshold", "sensitivity", "false_positives_per_hour")
        }
        label = mode if mode != "auto" else "auto (" + ", ".join(r["mode"].split(":")[1] for r in rs) + ")"
        lines.append(
            f"| {labels} | {label} | {mean['auprc']:.3f} | {mean['best_f1']:.3f} | "
            f"{mean['f1_at_threshold']:.3f} | {mean['sensitivity']:.2f} | "
            f"{mean['false_positives_per_hour']:.0f} |"
        )
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in ("speed", "transfer") if p in result]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, part in zip(axes[0], panels):
        if part == "speed":
            rows = result["speed"]["network"]
            for label, color in (("default", "C0"), ("reference", "C1")):
                for form, threads, precision, style in CURVES:
                    rs = [
                        r
                        for r in rows
                        if r["model"] == label
                        and r.get("form", "plain") == form
                        and r["threads"] == threads
                        and r["precision"] == precision
                    ]
                    if rs:
                        ax.plot(
                            [r["batch"] for r in rs],
                            [r["fraction_of_matmul"] for r in rs],
                            style,
                            color=color,
                            label=f"{label} {form} {threads}t {precision}",
                        )
            ax.axhline(1 / 1.5, color="gray", ls=":", label="target (1/1.5 of matmul)")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch (channel-windows)")
            ax.set_ylabel("fraction of the matmul rate")
            ax.set_title("inference efficiency")
        else:
            rows = result["transfer"]["rows"]
            for mode, style in (("cold", "o-"), ("warm", "s-"), ("auto", "^--")):
                labels = sorted({r["labels"] for r in rows if r["mode"].split(":")[0] == mode})
                means = [
                    np.mean([r["auprc"] for r in rows if r["labels"] == n and r["mode"].split(":")[0] == mode])
                    for n in labels
                ]
                ax.plot(labels, means, style, label=mode)
            cohort = [r["auprc"] for r in rows if r["mode"] == "cohort"]
            ax.axhline(cohort[0], color="gray", ls=":", label="cohort, 0 labels")
            ax.axhline(result["transfer"]["test_prevalence"], color="k", ls="--", lw=0.8, label="prevalence")
            ax.set_xlabel("labels of patient D")
            ax.set_ylabel("test AUPRC on D")
            ax.set_title("cross-patient warm start (train A-C, test D)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["speed", "transfer", "all"], default="all")
    parser.add_argument("--labels", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=1, help="threads for training (1: the stable figure on a shared 2-core machine)"
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    defaults = SpikeDetector().get_params()
    default = {k: defaults[k] for k in ("width", "depth", "kernel_size", "dilation")}
    result: dict = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "default_model": default,
    }
    if args.out.exists():  # keep the other part's results when running one part
        previous = json.loads(args.out.read_text())
        result |= {k: v for k, v in previous.items() if k in ("speed", "transfer") and args.part not in (k, "all")}
    if args.part in ("speed", "all"):
        result["speed"] = speed(args, default)
    if args.part in ("transfer", "all"):
        result["transfer"] = transfer(args, default)
        print(transfer_table(result["transfer"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
