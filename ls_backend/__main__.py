"""``python -m ls_backend``: the ML backend on Flask's development server (use gunicorn in production)."""

from __future__ import annotations

import argparse

from .app import make_server_app
from .engine import SpikeEngine
from .retrain import retraining_job


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ls_backend",
        description="Spike detection ML backend for Label Studio (settings from the environment: see README). "
        "Production: gunicorn --bind 0.0.0.0:9090 'ls_backend.wsgi:app'",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9090)
    args = parser.parse_args(argv)
    make_server_app(SpikeEngine, retraining_job).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
