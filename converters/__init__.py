"""Read EEG/sEEG recordings, preprocess them in bounded memory, and turn them into Label Studio tasks."""

import logging

__version__ = "0.1.0"

logger = logging.getLogger("converters")
