"""``python -m converters.synthetic``: see :mod:`converters.synthetic.command`."""

from .command import main

raise SystemExit(main())
