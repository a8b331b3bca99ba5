"""A task's display data by URL: the task names its page, and the ML backend draws it from the window store.

Inline display data (every channel's decimated trace in the task) makes each task about 100 KB: a 100,000-task
project would put gigabytes into Label Studio's database and import at tens of tasks per second. With a
:class:`DisplayLinks`, a task's time series is a URL of the backend's ``/display/`` route instead (the labeling
config's ``<TimeSeries valueType="url">``), which the editor fetches when the task opens; the page is the same one
(:func:`converters.tasks.page_data`).

The editor fetches without credentials, so the URL carries its own authorisation: an HMAC of its parameters, keyed
by the backend's basic-auth password (:func:`signing_key`; the importer knows it, as it gives Label Studio the
backend's credentials). A backend without basic auth serves unsigned URLs, as it serves everything else.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from .labelconfig import PageLayout

DISPLAY_ROUTE = "/display/"
SIGNED_FIELDS = ("store", "window", "gain", "context", "points")


def signing_key(basic_auth_pass: str | None) -> bytes | None:
    """The key display URLs are signed with (None: the backend has no basic auth, URLs are not signed)."""
    if not basic_auth_pass:
        return None
    return hashlib.sha256(b"spike-al display url\0" + basic_auth_pass.encode()).digest()


def signature(key: bytes, fields: Mapping[str, str]) -> str:
    message = "\n".join(f"{name}={fields[name]}" for name in SIGNED_FIELDS)
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class DisplayRequest:
    """What one display URL asks for: a window of a store, on a page at ``gain_uv`` with ``context_seconds``
    around it, at most ``max_points`` points."""

    store: str
    window_id: str
    gain_uv: float
    context_seconds: float
    max_points: int

    def layout(self, window_seconds: float) -> PageLayout:
        return PageLayout(self.gain_uv, window_seconds, self.context_seconds)


@dataclass(frozen=True)
class DisplayLinks:
    """Display URLs of tasks on the backend at ``base_url`` (as the clinicians' browsers reach it)."""

    base_url: str
    key: bytes | None = None

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"display URL {self.base_url!r}: expected http://host:port or https://...")

    def url(self, store: str, window_id: str, layout: PageLayout, max_points: int) -> str:
        """The URL of the page of ``layout`` around one window, at most ``max_points`` points."""
        fields = {
            "store": store,
            "window": window_id,
            "gain": f"{layout.gain_uv:g}",
            "context": f"{layout.context_seconds:g}",
            "points": str(max_points),
        }
        query = {k: v for k, v in fields.items() if k != "store"}
        if self.key is not None:
            query["sig"] = signature(self.key, fields)
        return f"{self.base_url.rstrip('/')}{DISPLAY_ROUTE}{quote(store)}?{urlencode(query)}"


def parse_display_request(store: str, query: Mapping[str, str], key: bytes | None) -> DisplayRequest:
    """The request of a display URL (its path's ``store`` and its ``query``); ValueError naming the field that is
    missing or wrong, PermissionError when the signature does not match (with a ``key``)."""
    fields = {"store": store}
    for name in SIGNED_FIELDS[1:]:
        if not query.get(name):
            raise ValueError(f"display URL: the query field {name!r} is missing")
        fields[name] = query[name]
    if key is not None and not hmac.compare_digest(str(query.get("sig", "")), signature(key, fields)):
        raise PermissionError("display URL: bad or missing signature")
    try:
        gain, context, points = float(fields["gain"]), float(fields["context"]), int(fields["points"])
    except ValueError:
        raise ValueError("display URL: gain and context must be numbers, points a whole number") from None
    if not (gain > 0 and context >= 0 and points > 0):
        raise ValueError(f"display URL: expected gain > 0, context >= 0, points > 0; got {gain}, {context}, {points}")
    return DisplayRequest(store, fields["window"], gain, context, points)
