"""The ML backend: spike model, active learning and the Label Studio ML backend server."""

import logging

__version__ = "0.1.0"

logger = logging.getLogger("ls_backend")
