"""What the backend's commands share (``python -m ls_backend.budget``, ``.detect``, ``.review``)."""

from __future__ import annotations

import argparse
import logging
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An argument parser that reports bad input as one line (``prog: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def configure_logging(verbose: int) -> None:
    """Warnings only, ``-v`` information, ``-vv`` debug messages, each with its time and logger."""
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
