"""Spike detection over whole recordings: every sample of every window store scored, events, exports, report.

``python -m ls_backend.detect`` is the command (see its ``--help``).
"""
