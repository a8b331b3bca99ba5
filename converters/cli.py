"""``python -m converters.import``: add a patient's recordings to Label Studio as time-series tasks."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .convert import StoreInfo, convert_recording
from .display import DisplayLinks, signing_key
from .labelconfig import CONTEXT_SECONDS, PageLayout, make_label_config
from .montage import MONTAGES
from .preprocess import PreprocessParams
from .readers import find_recordings, read_recording
from .readers.base import RecordingError
from .tasks import EVENT_MODES, make_tasks, page_layout
from .windows import WindowParams, WindowStore, select_candidates

logger = logging.getLogger("converters")

EXAMPLES = """
examples:
  # add patient P01 from an EDF file to the Label Studio at $LABEL_STUDIO_URL, 2-s windows, at most 5000 tasks
  export LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=<your token>
  python -m converters.import recordings/P01_night1.edf --patient P01 --max-windows 5000

  # a BIDS folder, two recordings converted in parallel, connect the ML backend
  python -m converters.import bids_root/sub-P02 --patient P02 --jobs 2 --backend-url http://localhost:9090

  # no server: write the tasks and the label config as files
  python -m converters.import rec.vhdr --patient P03 --dry-run --out P03_tasks.json

  # HDF5 / MATLAB v7.3 with no metadata inside: say where the data is and how fast it was sampled
  python -m converters.import rec.mat --patient P04 --dataset /data --sfreq 2048 --line-freq 60
"""


LARGE_IMPORT_TASKS = 10_000  # above this, an inline import is said to be better done with --display-url
INLINE_TASK_KB = 190  # measured: a 22-channel 10-s page inline (benchmarks/bench_import.py)


class ImportError_(RuntimeError):
    """A user-facing failure of the import command (printed as one line, exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m converters.import",
        description=(
            "Read a patient's recordings (any format MNE reads, HDF5/MATLAB v7.3, BIDS folders), preprocess them "
            "in bounded memory into a window store, and import one Label Studio time-series task per window. "
            "Running it again on the same files adds no duplicate tasks."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recordings", nargs="+", type=Path, help="recording files, folders of them, or BIDS folders")
    parser.add_argument("--patient", required=True, help="patient identifier, e.g. P01 (names the project)")
    parser.add_argument("--project", help="Label Studio project title (default: 'Spikes <patient>')")
    parser.add_argument(
        "--store-dir",
        type=Path,
        default=Path(os.environ.get("WINDOW_STORE_DIR", "window_stores")),
        help="where window stores are written; the ML backend reads model input here "
        "(env WINDOW_STORE_DIR, default %(default)s)",
    )
    group = parser.add_argument_group("channels and preprocessing")
    group.add_argument("--channels", help="comma-separated channels to use (default: all EEG/sEEG/ECoG channels)")
    group.add_argument(
        "--montage",
        default=PreprocessParams.montage,
        choices=MONTAGES,
        help="auto: bipolar pairs of adjacent contacts for sEEG, the longitudinal bipolar 'double banana' (banana) "
        "for scalp 10-20 EEG, as recorded otherwise; referential (or monopolar): as recorded; average: common "
        "average reference; for the display and the model (default %(default)s)",
    )
    group.add_argument("--model-sfreq", type=float, default=PreprocessParams.sfreq, help="model rate in Hz")
    group.add_argument("--l-freq", type=float, default=PreprocessParams.l_freq_hz, help="high-pass edge in Hz")
    group.add_argument("--h-freq", type=float, default=PreprocessParams.h_freq_hz, help="low-pass edge in Hz")
    group.add_argument(
        "--line-freq",
        type=float,
        help="notch at 50 or 60 Hz (and harmonics); 0 disables (default: the recording's BIDS "
        "PowerLineFrequency, else 50)",
    )
    group = parser.add_argument_group("windows and tasks")
    group.add_argument("--window", type=float, default=WindowParams.window_seconds, help="window length in seconds")
    group.add_argument("--stride", type=float, help="seconds between window starts (default: window length)")
    group.add_argument(
        "--max-windows",
        type=int,
        help="candidate pool: at most N tasks per recording, one per time stratum (default: every window)",
    )
    group.add_argument(
        "--events",
        default="none",
        choices=EVENT_MODES,
        help="import events stored with the recording (EDF+, BrainVision markers, BIDS events.tsv) "
        "as annotations or predictions (default %(default)s)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of the candidate pool choice")
    group.add_argument(
        "--gain-uv",
        type=float,
        help="amplitude scale of the display: every channel row spans +-GAIN uV, traces beyond are clipped "
        "(default: from the patient's robust amplitude, 5 robust standard deviations rounded up to a usual gain)",
    )
    group.add_argument(
        "--context",
        type=float,
        default=CONTEXT_SECONDS,
        help="seconds of signal shown on each side of the window to label (default %(default)s)",
    )
    group = parser.add_argument_group("HDF5 / MATLAB v7.3 input")
    group.add_argument("--dataset", help="path of the signal dataset inside the file (default: found)")
    group.add_argument("--sfreq", type=float, help="sampling rate in Hz when the file does not store it")
    group.add_argument("--ch-names", help="comma-separated channel names when the file does not store them")
    group = parser.add_argument_group("Label Studio")
    group.add_argument("--url", default=os.environ.get("LABEL_STUDIO_URL"), help="server URL (env LABEL_STUDIO_URL)")
    group.add_argument("--api-key", default=os.environ.get("LABEL_STUDIO_API_KEY"), help="(env LABEL_STUDIO_API_KEY)")
    group.add_argument(
        "--backend-url",
        help="connect this ML backend to the project (a backend with basic auth: set BASIC_AUTH_USER and "
        "BASIC_AUTH_PASS; WEBHOOK_SECRET is set as the project webhook's X-Webhook-Secret header)",
    )
    group.add_argument(
        "--display-url",
        default=os.environ.get("BACKEND_PUBLIC_URL"),
        help="tasks name their traces by a URL of the ML backend as the clinicians' browsers reach it (e.g. "
        "http://eeg-server:9090; env BACKEND_PUBLIC_URL), which draws them from the window stores: small tasks, "
        "fast imports, a small database (for large projects). Default: traces inline in each task",
    )
    group.add_argument("--batch-size", type=int, default=200, help="tasks per import request (default %(default)s)")
    group.add_argument("--dry-run", action="store_true", help="convert and build tasks, talk to no server")
    group.add_argument(
        "--out",
        type=Path,
        help="also write the tasks as a JSON file, and the labeling config next to it as <stem>.label_config.xml",
    )
    parser.add_argument("--jobs", type=int, default=1, help="recordings converted in parallel (default 1)")
    parser.add_argument(
        "--queue",
        action="store_true",
        help="convert on the backend's RQ workers (python -m ls_backend.worker), one job per recording; the "
        "workers must see the recordings and --store-dir at the same paths",
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="Redis of --queue (env REDIS_URL)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--version", action="version", version=f"converters {__version__}")
    return parser


@dataclass
class ImportSummary:
    project_id: int | None
    created_project: bool
    stores: list[StoreInfo]
    n_tasks_new: int
    n_tasks_skipped: int


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        summary = run_import(args)
    except (ImportError_, RecordingError, ValueError, OSError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"error: {_one_line(err, 'interrupted (Ctrl-C)')}", file=sys.stderr)
        return 130
    except SystemExit as err:  # e.g. from a signal handler: say what was undone, keep its exit code
        print(f"error: {_one_line(err, f'stopped (exit code {err.code})')}", file=sys.stderr)
        raise
    except Exception as err:  # a StudioError: one line, no traceback (studio is imported only with a server)
        studio = sys.modules.get("converters.studio")
        if studio is None or not isinstance(err, studio.StudioError):
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    where = f"project {summary.project_id}" if summary.project_id is not None else "no server (dry run)"
    print(f"{summary.n_tasks_new} new tasks, {summary.n_tasks_skipped} already present -> {where}")
    return 0


def _one_line(err: BaseException, what: str = "") -> str:
    """``what`` happened (default: the error's message), with the notes added on its way up (what was undone)."""
    return "; ".join(part for part in (what or str(err), *getattr(err, "__notes__", ())) if part)


def run_import(args: argparse.Namespace) -> ImportSummary:
    params = PreprocessParams(
        sfreq=args.model_sfreq,
        l_freq_hz=args.l_freq or None,
        h_freq_hz=args.h_freq or None,
        line_freq_hz="auto" if args.line_freq is None else (args.line_freq or None),
        montage=args.montage,
    )
    window_params = WindowParams(args.window, args.stride)
    reader_options = _reader_options(args)
    sources = _expand(args.recordings)
    _check_sources(sources, reader_options)
    client = None
    if not args.dry_run:
        from . import studio

        client = studio.connect(args.url, args.api_key)
        if args.backend_url:  # before any work: a backend that surely cannot be connected fails here
            studio.check_ml_backend(client, args.backend_url, _backend_auth())
    store_paths = [_store_path(source, args) for source in sources]
    with _stores_undone_on_failure(store_paths):
        stores = _convert_all(sources, store_paths, args, params, window_params, reader_options)
        ch_names = _common_channels(stores)
        layout = _page_layout(stores, args)
        display = _display_links(args)
        label_config = make_label_config(ch_names, layout, display_by_url=display is not None)
        tasks = _iter_tasks(stores, args, layout, display)
        if args.out:
            tasks = _tee_to_file(tasks, args.out, label_config)
        if client is None:
            n = sum(1 for _ in tasks)
            return ImportSummary(None, False, stores, n, 0)
        return _import_into_studio(client, args, label_config, tasks, stores)


def _import_into_studio(client, args, label_config: str, tasks: Iterator[dict], stores) -> ImportSummary:
    """All or nothing: whatever fails (also Ctrl-C), the project is left as it was before this run."""
    from . import studio

    title = args.project or f"Spikes {args.patient}"
    project, created = studio.get_or_create_project(client, title, label_config, description=_description(args))
    project_id = studio.require_id(project.id, f"project {title!r}")
    total = sum(len(_candidate_rows(s, args)) for s in stores)
    if total > LARGE_IMPORT_TASKS and not args.display_url:
        logger.warning(
            "%d tasks with their traces inline: about %.1f GB in Label Studio's database and a slow import; "
            "--display-url (the backend serves the traces) keeps each task under 1 KB",
            total, total * INLINE_TASK_KB / 2**20,
        )  # fmt: skip
    created_ids: list[int] = []
    try:
        existing = set() if created else studio.existing_window_ids(client, project_id)
        new_tasks = (t for t in tasks if t["data"]["window_id"] not in existing)
        created_ids = studio.import_tasks(client, project_id, new_tasks, batch_size=args.batch_size, total=total)
        if args.backend_url:
            studio.connect_ml_backend(
                client,
                project_id,
                args.backend_url,
                basic_auth=_backend_auth(),
                webhook_secret=os.environ.get("WEBHOOK_SECRET") or None,
            )
    except BaseException as err:  # import_tasks undid its own batches; undo the rest
        undone = studio.undo_import(client, project_id, created_ids, project_created=created)
        if undone:
            err.add_note(undone)
        raise
    return ImportSummary(project_id, created, stores, len(created_ids), total - len(created_ids))


def _display_links(args: argparse.Namespace) -> DisplayLinks | None:
    """Display by URL (``--display-url``), signed with the backend's basic auth (None: inline display)."""
    if not args.display_url:
        return None
    auth = _backend_auth()
    return DisplayLinks(args.display_url, signing_key(auth[1] if auth else None))


def _backend_auth() -> tuple[str, str] | None:
    """The ML backend's basic auth (env BASIC_AUTH_USER and BASIC_AUTH_PASS), None without both."""
    user, password = os.environ.get("BASIC_AUTH_USER"), os.environ.get("BASIC_AUTH_PASS")
    return (user, password) if user and password else None


def _reader_options(args: argparse.Namespace) -> dict:
    options = {"dataset": args.dataset, "sfreq": args.sfreq}
    if args.ch_names:
        options["ch_names"] = [c.strip() for c in args.ch_names.split(",")]
    return {k: v for k, v in options.items() if v is not None}


def _expand(paths: list[Path]) -> list[Path]:
    sources = []
    for path in paths:
        if not path.exists():
            raise ImportError_(f"{path}: no such file or folder")
        found = find_recordings(path) if path.is_dir() and not _is_recording_folder(path) else [path]
        if not found:
            raise ImportError_(f"{path}: no recording found in this folder")
        sources.extend(found)
    return sorted(set(sources))


def _is_recording_folder(path: Path) -> bool:
    """Some formats are folders (EGI .mff, CTF .ds)."""
    return path.suffix.lower() in (".mff", ".ds")


def _check_sources(sources: list[Path], reader_options: dict) -> None:
    """Open every header before any work: unreadable files and mixed sampling rates fail fast."""
    rates = {}
    for source in sources:
        with _quiet("converters.readers"), read_recording(source, **reader_options) as recording:
            if recording.n_times == 0:
                raise RecordingError(f"{source}: the recording has no samples")
            rates[source] = recording.sfreq
    if len(set(rates.values())) > 1:
        listing = ", ".join(f"{p.name}: {r:g} Hz" for p, r in rates.items())
        raise ImportError_(f"sampling rates differ between the files of one patient ({listing})")


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Hold back a logger's warnings (the conversion opens the same files again and says them once)."""
    target = logging.getLogger(logger_name)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)


def _store_path(source: Path, args: argparse.Namespace) -> Path:
    return args.store_dir / args.patient / f"{source.stem}.h5"


@contextmanager
def _stores_undone_on_failure(paths: list[Path]) -> Iterator[None]:
    """On any failure (also Ctrl-C), put back the stores this run replaced and remove the ones it added.

    The previous store stays in place meanwhile (the ML backend may be reading it): a hard link (a copy where the
    file system has none) keeps it, since a conversion writes ``<store>.tmp`` and renames it over the store.
    """
    backups = {path: _keep_copy(path) for path in paths if path.exists()}
    try:
        yield
    except BaseException:
        for path in paths:
            if path in backups:
                os.replace(backups[path], path)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        for backup in backups.values():
            backup.unlink(missing_ok=True)


def _keep_copy(path: Path) -> Path:
    backup = path.with_name(path.name + ".before-import")
    backup.unlink(missing_ok=True)  # left by a run that was killed
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def _convert_all(sources, store_paths, args, params, window_params, reader_options) -> list[StoreInfo]:
    channels = [c.strip() for c in args.channels.split(",")] if args.channels else None
    jobs = [(s, p, params, window_params, channels, reader_options) for s, p in zip(sources, store_paths)]
    if args.queue:
        return _convert_on_queue(jobs, args.redis_url)
    if args.jobs > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            return list(pool.map(_convert_job, jobs))
    return [_convert_job(job) for job in jobs]


def _convert_on_queue(jobs: list[tuple], redis_url: str | None) -> list[StoreInfo]:
    """Each conversion as a job on the workers' conversion queue (absolute paths: a worker runs elsewhere)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from .queued import CONVERT_QUEUE_NAME, QueuedJobError, run_jobs

    if not redis_url:
        raise ImportError_("--queue needs the workers' Redis: set REDIS_URL or pass --redis-url")
    jobs = [(Path(source).resolve(), Path(store).resolve(), *rest) for source, store, *rest in jobs]
    try:
        return run_jobs(redis_url, CONVERT_QUEUE_NAME, convert_recording, jobs, [str(j[0]) for j in jobs], "conversion")
    except QueuedJobError as err:
        raise ImportError_(str(err)) from None
    except RedisConnectionError as err:
        raise ImportError_(f"--queue: cannot reach Redis at {redis_url} ({err})") from None


def _convert_job(job: tuple) -> StoreInfo:
    return convert_recording(*job)


def _common_channels(stores: list[StoreInfo]) -> list[str]:
    first = stores[0]
    for info in stores[1:]:
        if info.ch_names != first.ch_names:
            raise ImportError_(
                f"channels differ between recordings of one patient: {Path(first.source).name} has "
                f"{', '.join(first.ch_names)}; {Path(info.source).name} has {', '.join(info.ch_names)} "
                "(choose a common set with --channels)"
            )
    return first.ch_names


def _page_layout(stores: list[StoreInfo], args: argparse.Namespace) -> PageLayout:
    """One page layout (and amplitude scale) for all the patient's tasks."""
    if args.gain_uv is not None and not args.gain_uv > 0:
        raise ImportError_(f"--gain-uv must be a positive number of microvolts, got {args.gain_uv:g}")
    if args.context < 0:
        raise ImportError_(f"--context must be zero or more seconds, got {args.context:g}")
    opened = [WindowStore(info.store) for info in stores]
    try:
        return page_layout(opened, args.gain_uv, args.context)
    except ValueError as err:
        raise ImportError_(f"{err}; expected one --window for all recordings of a patient") from err
    finally:
        for store in opened:
            store.close()


def label_config_path(out: Path) -> Path:
    """Where ``--out FILE`` puts the labeling config: ``<FILE stem>.label_config.xml`` next to FILE."""
    return out.with_name(f"{out.stem}.label_config.xml")


def _candidate_rows(info: StoreInfo, args: argparse.Namespace):
    return select_candidates(info.n_windows, args.max_windows, args.seed)


def _iter_tasks(
    stores: list[StoreInfo], args: argparse.Namespace, layout: PageLayout, display: DisplayLinks | None
) -> Iterator[dict]:
    for info in stores:
        key = os.path.relpath(info.store, args.store_dir)
        try:
            with WindowStore(info.store) as store:
                yield from make_tasks(
                    store,
                    patient=args.patient,
                    recording=Path(info.source).name,
                    store_key=key,
                    rows=_candidate_rows(info, args),
                    events=args.events,
                    layout=layout,
                    display=display,
                )
        except (OSError, KeyError, ValueError) as err:
            raise ImportError_(
                f"{info.store}: building the tasks of {Path(info.source).name} failed ({type(err).__name__}: {err}); "
                "expected the complete window store this run wrote, with valid events"
            ) from err


def _tee_to_file(tasks: Iterable[dict], path: Path, label_config: str) -> Iterator[dict]:
    """Stream tasks into a JSON array file while passing them on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    label_config_path(path).write_text(label_config)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write("[")
            for k, task in enumerate(tasks):
                fh.write(("," if k else "") + "\n" + json.dumps(task))
                yield task
            fh.write("\n]\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _description(args: argparse.Namespace) -> str:
    return f"Spike review for patient {args.patient}. Tasks are {args.window:g}-s windows; label the next task first."
