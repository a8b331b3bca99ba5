"""Readers of EEG/sEEG recordings: :func:`read_recording` opens any supported format as a lazy :class:`Recording`.

One module per source format (:mod:`.edf`, :mod:`.hdf5`, :mod:`.matlab`, :mod:`.eeglab`, :mod:`.mne_formats`,
BIDS sidecars in :mod:`.bids`), all returning the :class:`Recording` of :mod:`.base`; :mod:`.dispatch` picks
the reader from the extension.
"""

from .base import Annotation, Recording, RecordingError
from .bids import bids_entities
from .dispatch import SUPPORTED_EXTENSIONS, find_recordings, read_recording

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "Annotation",
    "Recording",
    "RecordingError",
    "bids_entities",
    "find_recordings",
    "read_recording",
]
