"""A short synthetic recording with its window store and one detected event per true spike, for the detection
tests (the events a perfect detector would find, so that exports and reports can be checked against the truth)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from converters.convert import convert_recording
from converters.synthetic import PATIENTS, make_events, write_edf
from ls_backend.detect.events import Event

PATIENT = PATIENTS["C"]  # Am'1-5 and Hp'1-5 contacts: the store holds bipolar pairs of the original EDF's contacts
MODEL_VERSION = "p4-v0002"


class SyntheticDetection(NamedTuple):
    edf: Path  # the original recording
    store: Path  # its window store
    events: list[Event]  # one per true spike; the first one "confirmed" by a clinician


def synthetic_detection(root: Path, seconds: float = 60, name: str = "sub-04_task-rest_ieeg") -> SyntheticDetection:
    """Write ``root/<name>.edf`` (patient C), convert it to ``root/stores/<name>.h5``, and make one event per true
    spike: peak on the derivation of its main contact, involving the next contact's derivation too."""
    edf = write_edf(root / f"{name}.edf", PATIENT, seconds)
    info = convert_recording(edf, root / "stores" / f"{name}.h5")
    return SyntheticDetection(edf, Path(info.store), spike_events(info.ch_names, seconds))


def spike_events(ch_names: list[str], seconds: float) -> list[Event]:
    """One event per true spike of ``seconds`` of the patient (the recording's derivations ``ch_names``); the first
    one "confirmed" by a clinician."""
    events = []
    for k, spike in enumerate(e for e in make_events(PATIENT, seconds) if e.is_spike):
        peak_channel = derivation_of(ch_names, spike.channels[0])
        involved = {peak_channel: 0.9, derivation_of(ch_names, spike.channels[1]): 0.7}
        reviewed = "confirmed" if k == 0 else ""
        events.append(Event(spike.peak_seconds - 0.05, 0.1, spike.peak_seconds, peak_channel, 0.9, involved,
                            reviewed, MODEL_VERSION))  # fmt: skip
    return events


def derivation_of(ch_names: list[str], contact: str) -> str:
    """The bipolar derivation that starts at ``contact`` (or ends there, for the last contact of a shaft)."""
    return next((n for n in ch_names if n.startswith(f"{contact}-")), None) or next(
        n for n in ch_names if n.endswith(f"-{contact}")
    )
