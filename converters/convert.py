"""One recording in, one window store out: a plain function of its inputs (a job queue can run it anywhere)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .preprocess import PreprocessParams, Resampling, plan_channels, preprocess_stream, robust_scale
from .readers import read_recording
from .readers.base import RecordingError
from .windows import StoreWriter, WindowParams, fingerprint, window_ids, window_starts

logger = logging.getLogger(__name__)


@dataclass
class StoreInfo:
    """What a conversion produced (small and picklable, returned from worker processes)."""

    source: str
    store: str
    fingerprint: str
    source_sfreq: float
    sfreq: float
    duration_seconds: float
    ch_names: list[str]
    excluded: dict[str, str]
    n_windows: int
    meas_date: str | None = None
    annotations: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def convert_recording(
    source: str | Path,
    store_path: str | Path,
    params: PreprocessParams | None = None,
    window_params: WindowParams | None = None,
    channels: list[str] | None = None,
    reader_options: dict | None = None,
) -> StoreInfo:
    """Read ``source``, preprocess it in bounded memory and write its window store to ``store_path``."""
    source = Path(source)
    params = params or PreprocessParams()
    window_params = window_params or WindowParams()
    with read_recording(source, **(reader_options or {})) as recording:
        if recording.n_times == 0:
            raise RecordingError(f"{source}: the recording has no samples")
        params = params.for_recording(recording)
        plan = plan_channels(recording, params, channels)
        n_times = Resampling.plan(recording.sfreq, params.sfreq).n_out(recording.n_times)
        window, stride = window_params.samples(params.sfreq)
        starts = window_starts(n_times, window, stride)
        if len(starts) == 0:
            raise RecordingError(
                f"{source}: {recording.duration_seconds:.2f} s is shorter than one "
                f"{window_params.window_seconds} s window"
            )
        source_fp = fingerprint(source)
        writer = StoreWriter(store_path, len(plan.montage.ch_names), n_times)
        try:
            scales = []
            for block in preprocess_stream(recording, plan, params):
                writer.append(block)
                scales.append(robust_scale(block))
            scale = np.median(np.stack(scales), axis=0)
            scale[~(scale > 0)] = 1.0
            writer.write_index(window_ids(source_fp, starts, params.sfreq, window), starts)
            writer.write_annotations(recording.annotations)
            meas_date = recording.meas_date.isoformat() if recording.meas_date else None
            provenance = {
                "source": str(source),
                "source_fingerprint": source_fp,
                "source_sfreq": recording.sfreq,
                "source_ch_names": [recording.ch_names[i] for i in plan.picks],
                "excluded_channels": plan.excluded,
                "montage": plan.montage.kind,
                "preprocess": params.to_dict(),
                "windows": asdict(window_params),
                "meas_date": meas_date,
                "software": f"converters {__version__}",
                "store_format_version": 1,
            }
            writer.set_attrs(
                sfreq=params.sfreq,
                ch_names=plan.montage.ch_names,
                channel_scale_uv=scale.astype(np.float32),
                window_samples=window,
                stride_samples=stride,
                provenance=provenance,
            )
            path = writer.commit()
        except BaseException:
            writer.abort()
            raise
    logger.info("%s: %d windows of %d channels -> %s", source.name, len(starts), len(plan.montage.ch_names), path)
    return StoreInfo(
        source=str(source),
        store=str(path),
        fingerprint=source_fp,
        source_sfreq=recording.sfreq,
        sfreq=params.sfreq,
        duration_seconds=recording.duration_seconds,
        ch_names=plan.montage.ch_names,
        excluded=plan.excluded,
        n_windows=len(starts),
        meas_date=meas_date,
        annotations=len(recording.annotations),
    )
