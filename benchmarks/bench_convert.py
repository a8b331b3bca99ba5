"""Conversion benchmark: synthetic 32 kHz, 24-channel EDF recordings of 1 and 4 hours, from a cold file.

Compares ``converters.convert.convert_recording`` with the plain MNE pipeline a user would write (read a chunk,
band-pass, notch, resample, cut windows), each in its own child process so that peak RSS is the child's own.
Prints a table and writes JSON + PNG next to each other.

    python -m benchmarks.bench_convert                      # 1 h and 4 h, baseline on the first 5 minutes
    python -m benchmarks.bench_convert --hours 0.25 --baseline-minutes 2 --out /tmp/quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "convert.json"


def evict_from_page_cache(path: Path) -> None:
    """Make the next read of ``path`` come from disk (clean pages of the file are dropped)."""
    os.sync()
    with open(path, "rb") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def run_child(args: list[str]) -> dict:
    """Run this module as a child doing one measurement; return its JSON line plus its own peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_convert", *args], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"benchmark child {args} failed with status {status}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["wall_seconds_total"] = time.perf_counter() - start
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def child_ours(source: str, store: str) -> dict:
    from converters.convert import convert_recording

    start = time.perf_counter()
    info = convert_recording(source, store)
    return {
        "seconds": time.perf_counter() - start,
        "duration_seconds": info.duration_seconds,
        "n_windows": info.n_windows,
    }


def child_mne(source: str, minutes: float) -> dict:
    """What a user writes with MNE for a long file: read a minute at a time, filter, notch, resample, window."""
    import mne

    mne.set_log_level("ERROR")
    start = time.perf_counter()
    raw = mne.io.read_raw_edf(source, preload=False)
    sfreq = raw.info["sfreq"]
    stop = min(raw.n_times, int(minutes * 60 * sfreq))
    chunk = int(60 * sfreq)
    n_windows = 0
    for a in range(0, stop, chunk):
        data = raw[:, a : min(a + chunk, stop)][0]
        data = mne.filter.filter_data(data, sfreq, 0.5, 80.0)
        data = mne.filter.notch_filter(data, sfreq, [50.0])
        data = mne.filter.resample(data, down=sfreq / 256.0)
        n_windows += data.shape[1] // 512
    return {"seconds": time.perf_counter() - start, "duration_seconds": stop / sfreq, "n_windows": n_windows}


def make_recording(path: Path, hours: float, sfreq: float, n_chans: int) -> Path:
    from converters.synthetic import benchmark_profile, write_edf

    if not path.exists():
        print(f"writing {path} ({hours:g} h, {n_chans} ch, {sfreq:g} Hz) ...", flush=True)
        write_edf(path, benchmark_profile(sfreq=sfreq, n_chans=n_chans), hours * 3600)
    return path


def disk_read_rate(path: Path, in_flight: int = 2, block_bytes: int = 32 << 20) -> dict:
    """The machine's limit: cold read of the whole file with ``in_flight`` concurrent reads, in MB/s and x real time.

    Direct reads (``O_DIRECT``) where the file system allows them, as the converter does for large files: through
    the page cache the copy and the cache's bookkeeping cost almost a core here. The whole file, not its start: a
    virtual disk may keep recently read parts in the host's cache."""
    from concurrent.futures import ThreadPoolExecutor

    from converters.readers._util import aligned_bytes, open_direct, pread_all

    evict_from_page_cache(path)
    fd = open_direct(path)
    method = "O_DIRECT" if fd is not None else "page cache"
    fd = fd if fd is not None else os.open(path, os.O_RDONLY)
    local = threading.local()

    def read(offset: int) -> int:
        if not hasattr(local, "buffer"):
            local.buffer = aligned_bytes(block_bytes)
        return pread_all(fd, memoryview(local.buffer), offset)

    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(in_flight) as pool:
            n_read = sum(pool.map(read, range(0, path.stat().st_size, block_bytes)))
    finally:
        os.close(fd)
    mb_per_s = n_read / 1e6 / (time.perf_counter() - start)
    seconds_per_mb = _duration(path) / (path.stat().st_size / 1e6)
    return {
        "pipeline": "disk read",
        "method": f"{method}, {in_flight} reads in flight",
        "read_mb_per_s": mb_per_s,
        "x_realtime": mb_per_s * seconds_per_mb,
        "peak_rss_mb": float("nan"),
        "duration_seconds": n_read / 1e6 * seconds_per_mb,
    }


def measure(path: Path, kind: str, baseline_minutes: float, store_dir: Path) -> dict:
    load = os.getloadavg()[0]
    evict_from_page_cache(path)
    if kind == "ours":
        result = run_child(["--child", "ours", str(path), str(store_dir / f"{path.stem}.h5")])
    else:
        result = run_child(["--child", "mne", str(path), str(baseline_minutes)])
    size = path.stat().st_size * result["duration_seconds"] / _duration(path)
    result |= {
        "pipeline": kind,
        "file": path.name,
        "file_mb": path.stat().st_size / 1e6,
        "x_realtime": result["duration_seconds"] / result["seconds"],
        "read_mb_per_s": size / 1e6 / result["seconds"],
        "load_average_before": load,
    }
    return result


def _duration(path: Path) -> float:
    from converters.readers import read_recording

    with read_recording(path) as rec:
        return rec.duration_seconds


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'pipeline':<10}{'recording':>12}{'processed':>11}{'x realtime':>12}{'MB/s':>9}{'peak RSS MB':>13}{'load':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['pipeline']:<10}{r['hours']:>10.2f} h{r['duration_seconds'] / 60:>9.1f} m"
            f"{r['x_realtime']:>12.1f}{r['read_mb_per_s']:>9.0f}{r['peak_rss_mb']:>13.0f}"
            f"{r.get('load_average_before', float('nan')):>6.1f}"
        )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    labels = [f"{r['pipeline']}\n{r['hours']:g} h" for r in rows]
    palette = {"ours": "#1f77b4", "mne": "#aaaaaa", "disk read": "#2ca02c"}
    colors = [palette[r["pipeline"]] for r in rows]
    ax1.bar(labels, [r["x_realtime"] for r in rows], color=colors)
    ax1.axhline(300, color="k", ls="--", lw=1, label="target 300x")
    ax1.set_ylabel("x real time (cold file)")
    ax1.legend()
    ax2.bar(labels, [np.nan_to_num(r["peak_rss_mb"]) for r in rows], color=colors)
    ax2.set_ylabel("peak RSS (MB)")
    fig.suptitle("Conversion of a 32 kHz, 24-channel EDF recording on 2 cores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--sfreq", type=float, default=32000.0)
    parser.add_argument("--n-chans", type=int, default=24)
    parser.add_argument("--baseline-minutes", type=float, default=5.0, help="MNE baseline runs on this much")
    parser.add_argument("--data-dir", type=Path, default=HERE / "_data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = child_ours(*rest) if kind == "ours" else child_mne(rest[0], float(rest[1]))
        print(json.dumps(result))
        return 0
    args.data_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for hours in args.hours:
        path = make_recording(args.data_dir / f"synthetic_{hours:g}h.edf", hours, args.sfreq, args.n_chans)
        rows.append(disk_read_rate(path) | {"hours": hours})
        for kind in ("ours", "mne") if hours == min(args.hours) else ("ours",):
            rows.append(measure(path, kind, args.baseline_minutes, args.data_dir) | {"hours": hours})
            print(f"  {kind} {hours:g} h: {rows[-1]['x_realtime']:.1f}x real time", flush=True)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "command": "python -m benchmarks.bench_convert " + " ".join(argv or sys.argv[1:]),
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
