"""``python -m ls_backend.detect``: see :mod:`ls_backend.detect.command` and ``--help``."""

import sys

from ls_backend.detect.command import main

if __name__ == "__main__":
    sys.exit(main())
