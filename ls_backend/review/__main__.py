"""``python -m ls_backend.review``: see :mod:`ls_backend.review.command` and ``--help``."""

import sys

from ls_backend.review.command import main

if __name__ == "__main__":
    sys.exit(main())
