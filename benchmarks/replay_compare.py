"""Which strategy serves: replay results of several target patients side by side, strategies compared seed by seed.

    python -m benchmarks.replay_compare benchmarks/results/replay_{A,B,C,D}.json \
        --out benchmarks/results/strategies.json
    python -m benchmarks.replay_compare replay_pretrain_B.json replay_transients_B.json=@transients   # renamed
    python -m benchmarks.replay_compare replay_search_B.json replay_lse_B.json=+lse   # every name: mixed+lse

For every patient (one ``benchmarks.replay`` result file each) and strategy: the area under the learning curve
relative to the converged fully supervised reference (mean ± SD over the seeds), the seeds reaching 95 % of it, and
the final AUPRC. Then, for every pair of strategies, the paired difference of the area under the curve over the
same seeds (the same data split and first labels): its mean, a 95 % interval (t distribution), and on how many
seeds the first one is ahead. A difference whose interval excludes 0 is beyond the seed noise. With several patients,
``pooled``: the same for the pairs every patient has, over every (patient, seed), each difference divided by its
patient's reference (a pooled interval treats the patients' seeds as one sample). ``FILE=@TAG``
appends ``@TAG`` to the names of that file's variants that hold a ``+`` (two runs of one variant with different
settings, side by side; the plain strategies keep their names); ``FILE=+TAG`` appends ``+TAG`` to every name of that
file (a run whose settings differ throughout, e.g. ``--model``, beside the plain strategies of another).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from benchmarks.replay import area_under_curve

METRIC = "auprc"


def per_seed_aulc(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{strategy: {seed: AULC}}`` from a replay result file's curves."""
    return {
        name: {seed: area_under_curve(curve, METRIC) for seed, curve in by_seed.items()}
        for name, by_seed in result["curves"].items()
    }


def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    """Mean AULC difference ``a - b`` over their common seeds, its 95 % interval, and the seeds ``a`` is ahead on."""
    seeds = sorted(set(a) & set(b))
    return interval(np.array([a[s] - b[s] for s in seeds]))


def interval(diff: np.ndarray) -> dict[str, Any]:
    """Mean of paired differences, its 95 % interval (t distribution), how many are above 0, and how many."""
    half = np.nan
    if len(diff) > 1:
        half = float(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
    return {
        "mean": float(diff.mean()),
        "low": float(diff.mean() - half),
        "high": float(diff.mean() + half),
        "ahead": int((diff > 0).sum()),
        "seeds": len(diff),
    }


def compare(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per patient: each strategy's summary and every pair's paired difference."""
    out: dict[str, Any] = {}
    for patient, result in results.items():
        aulc = per_seed_aulc(result)
        reference = result["full_supervised"]["mean"][METRIC]
        strategies = {
            name: {
                "aulc_relative_mean": float(np.mean(list(values.values())) / reference),
                "aulc_relative_sd": float(np.std(list(values.values())) / reference),
                "reached_95": result["summary"][name][METRIC]["labels_to_95"]["n_reached"],
                "seeds": len(values),
                "final_auprc": result["summary"][name][METRIC]["final"]["mean"],
            }
            for name, values in aulc.items()
        }
        pairs = {f"{a} - {b}": paired(aulc[a], aulc[b]) for a, b in itertools.combinations(sorted(aulc), 2)}
        out[patient] = {"reference_auprc": reference, "budget": result["settings"]["budget"],
                        "strategies": strategies, "pairs": pairs}  # fmt: skip
    if len(results) > 1:
        out["pooled"] = pooled(results)
    return out


def pooled(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per pair of variants every patient has: the paired AULC differences over the reference, over every
    (patient, seed)."""
    relative = {}
    for patient, result in results.items():
        reference = result["full_supervised"]["mean"][METRIC]
        relative[patient] = {
            n: {s: v / reference for s, v in by_seed.items()} for n, by_seed in per_seed_aulc(result).items()
        }
    common = sorted(set.intersection(*(set(r) for r in relative.values())))
    pairs = {}
    for a, b in itertools.combinations(common, 2):
        diff = [r[a][s] - r[b][s] for r in relative.values() for s in sorted(set(r[a]) & set(r[b]))]
        pairs[f"{a} - {b}"] = interval(np.array(diff))
    return {"patients": sorted(results), "pairs": pairs}


def table(comparison: dict[str, Any]) -> str:
    lines = ["| patient | strategy | AULC / reference | seeds at 95 % | final AUPRC |", "|---|---|---:|---:|---:|"]
    patients = {p: e for p, e in comparison.items() if p != "pooled"}
    for patient, entry in patients.items():
        for name, s in entry["strategies"].items():
            lines.append(f"| {patient} | {name} | {s['aulc_relative_mean']:.3f} ± {s['aulc_relative_sd']:.3f} | "
                         f"{s['reached_95']}/{s['seeds']} | {s['final_auprc']:.3f} |")  # fmt: skip
    lines += ["", "| patient | pair (AULC a - b) | mean | 95 % interval | a ahead |", "|---|---|---:|---|---:|"]
    pooled_entry = comparison.get("pooled")
    pooled_rows = {} if pooled_entry is None else {"pooled (over the reference)": pooled_entry}
    for patient, entry in {**patients, **pooled_rows}.items():
        for pair, p in entry["pairs"].items():
            lines.append(f"| {patient} | {pair} | {p['mean']:+.3f} | [{p['low']:+.3f}, {p['high']:+.3f}] | "
                         f"{p['ahead']}/{p['seeds']} |")  # fmt: skip
    return "\n".join(lines)


def tagged(result: dict[str, Any], tag: str) -> dict[str, Any]:
    """``result`` with ``tag`` appended in curves and summary: an ``@TAG`` to the names of its variants (names with
    a ``+``), a ``+TAG`` to every name."""
    if not tag:
        return result
    if not tag.startswith(("@", "+")):
        raise SystemExit(f"a result file's tag must be =@TAG or =+TAG, got ={tag}")
    every = tag.startswith("+")
    for key in ("curves", "summary"):
        result[key] = {(name + tag if every or "+" in name else name): v for name, v in result[key].items()}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay_compare", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "results", nargs="+", help="benchmarks.replay result files (of one or more targets), each optionally =@TAG"
    )
    parser.add_argument("--out", type=Path, help="JSON of the comparison")
    args = parser.parse_args(argv)
    results = {}
    for spec in args.results:  # files of one target: their variants side by side
        path, _, tag = spec.partition("=")
        result = tagged(json.loads(Path(path).read_text()), tag)
        if (earlier := results.get(result["data"]["target"])) is not None:
            earlier["curves"] |= result["curves"]
            earlier["summary"] |= result["summary"]
        else:
            results[result["data"]["target"]] = result
    comparison = compare(results)
    print(table(comparison))
    if args.out:
        args.out.write_text(json.dumps(comparison, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
