"""Realistic synthetic sEEG for tests and benchmarks: spikes, background, artifacts, line noise.

The package follows the data flow:

* :mod:`.profiles`: a :class:`PatientProfile` describes one synthetic patient (electrode shafts, spike
  morphology, amplitude, rate and spread, 1/f background with an optional rhythm, spike-like artifacts,
  line noise); :data:`PATIENTS` holds four default ones;
* :mod:`.events`: :func:`make_events` draws the events of a recording (deterministic given the seed);
* :mod:`.signals`: :func:`iter_chunks` renders the signal chunk by chunk in bounded memory;
* :mod:`.edf` and :mod:`.writers`: streamed EDF+, HDF5 and BIDS iEEG output;
* :mod:`.command`: ``python -m converters.synthetic --help``.
"""

from .command import main
from .edf import EdfSpec, EdfWriter, write_edf_array
from .events import SyntheticEvent, make_events
from .profiles import (
    ARTIFACT_KINDS,
    EVENT_KINDS,
    MAX_CONTACTS_PER_SHAFT,
    PATIENTS,
    SPIKE_KINDS,
    Artifacts,
    Background,
    PatientProfile,
    SpikeSpread,
    benchmark_profile,
    physical_range_uv,
    with_n_channels,
)
from .signals import generate, iter_chunks
from .writers import (
    DEFAULT_START,
    EVENTS_COLUMNS,
    read_events_tsv,
    write_bids,
    write_edf,
    write_events_tsv,
    write_hdf5,
)

__all__ = [
    "ARTIFACT_KINDS",
    "DEFAULT_START",
    "EVENTS_COLUMNS",
    "EVENT_KINDS",
    "MAX_CONTACTS_PER_SHAFT",
    "PATIENTS",
    "SPIKE_KINDS",
    "Artifacts",
    "Background",
    "EdfSpec",
    "EdfWriter",
    "PatientProfile",
    "SpikeSpread",
    "SyntheticEvent",
    "benchmark_profile",
    "generate",
    "iter_chunks",
    "main",
    "make_events",
    "physical_range_uv",
    "read_events_tsv",
    "with_n_channels",
    "write_bids",
    "write_edf",
    "write_edf_array",
    "write_events_tsv",
    "write_hdf5",
]
