"""``python -m ls_backend.detect``: every spike in a patient's whole recordings, with exports and a report.

Every input is checked before any scoring starts (stores, model, threshold, output folder, Redis, labels); bad input
ends with one line on stderr naming the file, project or option, exit code 2, and nothing written. The outputs are
written only once every recording is done (see :mod:`ls_backend.detect.exports`).
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from label_studio_sdk.core.api_error import ApiError
from redis import Redis
from redis.exceptions import RedisError

from converters import studio
from converters.windows import WindowStore

from ..cli import OneLineParser, configure_logging
from ..config import Settings
from ..labels import TaskLabel, project_labels
from ..model.checkpoints import CheckpointError
from ..project_state import COLD_START_VERSION, ProjectState
from ..registry import ModelRegistry
from ..review.answers import apply_reviews
from ..review.exports import matched_ids, review_states
from ..stores import TaskInputError
from .events import Event
from .exports import (
    OutputExistsError,
    RecordingEvents,
    check_output_dir,
    record_detection,
    recording_stem,
    write_detection_output,
)
from .queue import ModelSpec, QueuedDetectionError, detect_recording, load_model, run_on_queue
from .reviewed import apply_labels, labels_of_store, store_key

logger = logging.getLogger(__name__)

PROG = "python -m ls_backend.detect"
STORE_SUFFIX = ".h5"  # what python -m converters.import writes
COLD_START_THRESHOLD = 0.5  # the classical detector's probability is a sigmoid centred on its z threshold
DEFAULT_BLOCK_WINDOWS = 256

EXAMPLES = """
examples:
  # the serving model of Label Studio project 3 over all of patient P01's window stores; the windows labeled in
  # project 3 override the model; results in MODEL_DIR/3/detections and on the backend's page /detections/3
  export MODEL_DIR=models LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=<your token>
  python -m ls_backend.detect window_stores/P01 --project 3

  # one recording, a given checkpoint, more sensitive than its operating point
  python -m ls_backend.detect window_stores/P01/night1.h5 --model models/3/checkpoints/p3-v0004.pt \\
      --threshold 0.3 --out P01_detections

  # a patient without labels yet: the classical transient detector
  python -m ls_backend.detect window_stores/P02 --model cold-start --out P02_detections

  # a cohort on the backend's RQ workers (python -m ls_backend.worker, on machines that mount the stores and the
  # checkpoint at the same paths): one job per recording
  export REDIS_URL=redis://localhost:6379/0
  python -m ls_backend.detect window_stores/P03 window_stores/P04 --model cold-start --out cohort --queue

outputs (in --out): per recording <stem>_events.tsv (BIDS derivatives, with a JSON sidecar) and .csv, annotations
for MNE and EDFbrowser, spike_rates.tsv, report.png; a rerun on the same folder replaces it whole.
"""


class UsageError(ValueError):
    """Bad input: reported as one line on stderr, exit code 2, before anything is scored or written."""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Score every sample of a patient's recordings (window stores), turn the spike probability into "
        "events (one per spike: onset, peak, channels, probability), apply the windows clinicians labeled, and "
        "write exports and a report. Settings from the environment like the backend's: MODEL_DIR, WINDOW_STORE_DIR, "
        "LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, REDIS_URL.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="STORE",
        help=f"window store files ({STORE_SUFFIX}, written by python -m converters.import) or folders searched "
        "for them recursively, e.g. window_stores/P01",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--project",
        help="Label Studio project id: its serving model from MODEL_DIR; default --out MODEL_DIR/<project>/detections "
        "and the page /detections/<project>, e.g. --project 3",
    )
    model.add_argument(
        "--model",
        metavar="PATH|cold-start",
        help="a model checkpoint (.pt, e.g. MODEL_DIR/3/checkpoints/p3-v0004.pt), or cold-start: the classical "
        "transient detector, for a patient without labels",
    )
    parser.add_argument(
        "--out", type=Path, help="output folder (required unless --project); replaced whole by a rerun, e.g. --out P01"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="event probability threshold in (0, 1): lower finds more spikes and more false ones (default: the "
        f"model's operating point; {COLD_START_THRESHOLD} for cold-start), e.g. --threshold 0.3",
    )
    parser.add_argument(
        "--labels",
        action=argparse.BooleanOptionalAction,
        help="let the windows labeled in --project override the model: a confirmed spike is kept, a 'No spike' "
        "window yields none (default: on with --project when LABEL_STUDIO_API_KEY is set)",
    )
    parser.add_argument(
        "--keep-rejected",
        action="store_true",
        help="keep the events of clusters a clinician rejected in python -m ls_backend.review, marked "
        "reviewed=rejected (default: removed); with --project",
    )
    parser.add_argument(
        "--queue",
        action="store_true",
        help="run one job per recording on the RQ workers of REDIS_URL (python -m ls_backend.worker) instead of "
        "here; waits for all of them, writes nothing if a job fails twice",
    )
    parser.add_argument(
        "--block-windows",
        type=int,
        default=DEFAULT_BLOCK_WINDOWS,
        help="windows scored per block: memory per recording stays bounded by it (default %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    return parser


@dataclass
class Plan:
    """A checked detection run: everything :func:`run` needs, nothing scored yet."""

    stores: list[Path]
    model: ModelSpec
    model_name: str  # "project 3", a checkpoint path, or "cold-start"
    threshold: float
    out: Path
    block_windows: int
    command: str
    state: ProjectState | None = None  # with --project: where the page finds the output
    redis_url: str = ""  # with --queue
    labels: dict[Path, list[TaskLabel]] | None = None  # with labels: each store's labeled windows
    n_labels: int = 0
    review_states: dict[str, str] = field(default_factory=dict)  # cluster review decisions, by member id
    keep_rejected: bool = False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = Settings.from_env()
        plan = plan_detection(args, settings, f"{PROG} {shlex.join(argv)}")
    except ValueError as err:  # UsageError, bad settings, bad project id, OutputExistsError
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    try:
        out, n_events = run(plan)
    except QueuedDetectionError as err:
        print(f"{PROG}: error: {err}; nothing was written", file=sys.stderr)
        return 1
    print(f"{n_events} spike event(s) in {len(plan.stores)} recording(s), model {plan.model.version}: {out}")
    if plan.state is not None:  # a patient with a cluster review gets the new detections to review
        from ..review.command import refresh_review

        refresh_review(settings, plan.state)
    return 0


def plan_detection(args: argparse.Namespace, settings: Settings, command: str) -> Plan:
    """Check every input (raising :class:`UsageError` naming it) and return the run to do."""
    state = project_state(settings, args.project)
    model, model_name, threshold = resolve_model(args, settings, state)
    if args.block_windows < 1:
        raise UsageError(f"--block-windows must be a whole number >= 1, got {args.block_windows}")
    stores = find_stores(args.inputs)
    check_stores(stores, model)
    out = output_dir(args.out, state)
    redis_url = check_queue(settings) if args.queue else ""
    plan = Plan(stores, model, model_name, threshold, out, args.block_windows, command, state, redis_url)
    if use_labels(args.labels, state, settings):
        assert state is not None
        plan.labels = fetch_store_labels(settings, state, stores)
        plan.n_labels = sum(map(len, plan.labels.values()))
    if state is not None:
        labels = [lab for found in (plan.labels or {}).values() for lab in found]
        plan.review_states = review_states(state, labels, settings.window_store_dir)
        plan.keep_rejected = args.keep_rejected
    elif args.keep_rejected:
        raise UsageError("--keep-rejected needs --project (the project whose cluster reviews apply)")
    return plan


def project_state(settings: Settings, project: str | None) -> ProjectState | None:
    if project is None:
        return None
    try:
        return ProjectState.of(settings.model_dir, project)
    except ValueError as err:
        raise UsageError(f"--project: {err}") from None


def resolve_model(
    args: argparse.Namespace, settings: Settings, state: ProjectState | None
) -> tuple[ModelSpec, str, float]:
    """The model to detect with, its name for the outputs, and the threshold (checked, or its default)."""
    if state is not None:
        spec, name = project_model(settings, state), f"project {state.key}"
    elif args.model == COLD_START_VERSION:
        spec, name = ModelSpec(None, COLD_START_VERSION), COLD_START_VERSION
    else:
        spec, name = checkpoint_model(Path(args.model)), args.model
    threshold = args.threshold
    if threshold is None:
        threshold = COLD_START_THRESHOLD if spec.checkpoint is None else float(load_model(spec.checkpoint)[0].threshold)
    if not 0 < threshold < 1:
        raise UsageError(f"--threshold must be in (0, 1) (a probability), got {threshold}")
    return spec, name, threshold


def project_model(settings: Settings, state: ProjectState) -> ModelSpec:
    """The serving model of the project (or the newest loadable one, as the backend serves), as a checkpoint."""
    registry = ModelRegistry(settings.model_dir)
    if registry.current_version(state.key) is None:
        raise UsageError(
            f"project {state.key} has no model in MODEL_DIR={settings.model_dir} yet (it trains once windows are "
            "labeled); detect with --model cold-start meanwhile"
        )
    try:
        loaded = registry.load(state.key)
    except CheckpointError as err:
        raise UsageError(f"project {state.key}: no usable checkpoint ({one_line(err)})") from None
    assert loaded is not None
    version = str(loaded[1].get("version") or registry.current_version(state.key))
    return checkpoint_model(state.checkpoint(version), version)


def checkpoint_model(path: Path, version: str | None = None) -> ModelSpec:
    """A checkpoint as a model spec, loaded once here to check it (a corrupt file or another architecture fails)."""
    try:
        _, metadata = load_model(str(path.resolve()))
    except CheckpointError as err:
        raise UsageError(
            f"--model: {one_line(err)}; expected a checkpoint of this backend (MODEL_DIR/<project>/checkpoints/*.pt) "
            "or cold-start"
        ) from None
    return ModelSpec(str(path.resolve()), version or str(metadata.get("version") or path.stem))


def one_line(err: Exception) -> str:
    """An error's first two lines (torch lists every mismatched parameter of another architecture on its own)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2]) + (" ...)" if len(lines) > 2 else "")


def find_stores(inputs: list[Path]) -> list[Path]:
    """The window stores named or found (recursively) in the inputs, each once, in order."""
    stores: dict[Path, Path] = {}
    for path in inputs:
        if path.is_dir():
            found = sorted(path.rglob(f"*{STORE_SUFFIX}"))
            if not found:
                raise UsageError(f"{path}: no window store (*{STORE_SUFFIX}) in this folder or below it")
        elif path.exists():
            found = [path]
        else:
            raise UsageError(f"{path}: no such file or folder (expected window stores, *{STORE_SUFFIX}, or folders)")
        stores |= {store.resolve(): store for store in found if store.resolve() not in stores}
    return list(stores.values())


def check_stores(stores: list[Path], model: ModelSpec) -> None:
    """Every store opens, has the model's sampling rate, and a stem of its own (outputs are named by it)."""
    sfreq = None if model.checkpoint is None else float(load_model(model.checkpoint)[0].sfreq)
    stems: dict[str, Path] = {}
    for path in stores:
        try:
            with WindowStore(path) as store:
                store_sfreq = store.sfreq
        except (OSError, ValueError) as err:
            raise UsageError(f"{err}; expected a window store written by python -m converters.import") from None
        if sfreq is not None and not math.isclose(store_sfreq, sfreq):
            raise UsageError(
                f"{path}: sampled at {store_sfreq:g} Hz, the model at {sfreq:g} Hz (convert the recording again "
                f"with --model-sfreq {sfreq:g})"
            )
        stem = recording_stem(path)
        if stem in stems:
            raise UsageError(f"{path} and {stems[stem]}: two recordings named {stem!r} in one output")
        stems[stem] = path


def output_dir(out: Path | None, state: ProjectState | None) -> Path:
    """``--out``, or the project's detection folder; one that holds something else is refused."""
    if out is None:
        if state is None:
            raise UsageError("--out is required with --model (the folder to write the detections to)")
        out = state.dir / "detections"
    try:
        check_output_dir(out)
    except OutputExistsError as err:
        raise UsageError(f"--out {err}") from None
    return out


def check_queue(settings: Settings) -> str:
    """The Redis URL for --queue, after checking that Redis answers."""
    if not settings.redis_url:
        raise UsageError(
            "--queue needs REDIS_URL (the Redis of the backend's RQ workers); without --queue detection runs here"
        )
    try:
        Redis.from_url(settings.redis_url).ping()
    except (RedisError, ValueError) as err:
        raise UsageError(f"--queue: Redis at REDIS_URL={settings.redis_url} does not answer ({err})") from None
    return settings.redis_url


def use_labels(asked: bool | None, state: ProjectState | None, settings: Settings) -> bool:
    """Whether labeled windows override the model (default: with a project and a Label Studio API key)."""
    if asked is None:
        return state is not None and bool(settings.label_studio_api_key)
    if asked and state is None:
        raise UsageError("--labels needs --project (the Label Studio project whose labels override the model)")
    if asked and not settings.label_studio_api_key:
        raise UsageError("--labels needs LABEL_STUDIO_API_KEY (and LABEL_STUDIO_URL) to read the project's labels")
    return asked


def fetch_store_labels(settings: Settings, state: ProjectState, stores: list[Path]) -> dict[Path, list[TaskLabel]]:
    """The project's labeled windows, by store (matched as the backend matches tasks: store key and window id)."""
    hint = "check LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY, or detect without labels (--no-labels)"
    try:
        client = studio.connect(settings.label_studio_url, settings.label_studio_api_key)
        labels = project_labels(client, state, settings.window_store_dir)
    except studio.StudioError as err:
        raise UsageError(f"{err}; {hint}") from None
    except TaskInputError as err:  # a store that labels drawn in context fall in cannot be read
        raise UsageError(f"project {state.key}: {err}") from None
    except ApiError as err:
        raise UsageError(
            f"Label Studio at {settings.label_studio_url}: reading the labels of project {state.key} failed "
            f"(HTTP {err.status_code}); {hint}"
        ) from None
    by_store = {}
    for path in stores:
        with WindowStore(path) as store:
            by_store[path] = labels_of_store(labels, store, store_key(path, settings.window_store_dir))
    logger.info("project %s: %d labeled window(s) in these recordings", state.key, sum(map(len, by_store.values())))
    return by_store


def run(plan: Plan, progress: bool = True) -> tuple[Path, int]:
    """Detect, apply the labels, write the outputs (all or nothing); the output folder and the number of events."""
    if plan.redis_url:
        found = run_on_queue(plan.redis_url, plan.stores, plan.model, plan.threshold, plan.block_windows,
                             progress=progress)  # fmt: skip
    else:
        found = [detect_recording(str(path), plan.model, plan.threshold, plan.block_windows, progress)
                 for path in plan.stores]  # fmt: skip
    recordings = [recording_events(plan, path, events) for path, events in zip(plan.stores, found)]
    info = {
        "model_version": plan.model.version,
        "model": plan.model_name,
        "threshold": plan.threshold,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": plan.command,
        "labeled_windows": plan.n_labels,
        "reviewed_detections": len(plan.review_states),
    }
    out = write_detection_output(plan.out, recordings, info)
    if plan.state is not None:
        record_detection(plan.state, out, info)
    return out, sum(len(recording.events) for recording in recordings)


def recording_events(plan: Plan, path: Path, events: list[Event]) -> RecordingEvents:
    """One recording's events for the outputs, with its labeled windows applied."""
    with WindowStore(path) as store:
        if plan.review_states:  # before the window labels, which win
            stem = recording_stem(path)
            ids = matched_ids(stem, events, plan.review_states)
            events = apply_reviews(events, ids, plan.review_states, plan.keep_rejected)
        if plan.labels is not None:
            window_seconds = store.window_samples / store.sfreq
            events = apply_labels(events, plan.labels[path], window_seconds, store)
        return RecordingEvents.from_store(store, events)
