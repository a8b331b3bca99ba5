"""Entry point of ``python -m converters.import``; the code lives in :mod:`converters.cli`."""

import sys

from converters.cli import main

if __name__ == "__main__":
    sys.exit(main())
