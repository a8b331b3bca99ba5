"""Container health check: exit 0 when the backend's /health answers UP (``python docker/healthcheck.py [URL]``).

Sends the backend's own basic-auth credentials (``BASIC_AUTH_USER``/``BASIC_AUTH_PASS``) when they are set, since
the backend then protects every endpoint, /health included.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_URL = "http://127.0.0.1:9090/health"  # the port of the image's gunicorn command


def is_healthy(url: str = DEFAULT_URL, environ: Mapping[str, str] = os.environ, timeout_seconds: float = 4.0) -> bool:
    request = urllib.request.Request(url)
    user, password = environ.get("BASIC_AUTH_USER", ""), environ.get("BASIC_AUTH_PASS", "")
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            return json.load(response).get("status") == "UP"
    except (urllib.error.URLError, OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(0 if is_healthy(*sys.argv[1:2]) else 1)
