"""A pytest plugin that fails the run on any skip an allow-list does not name.

``pytest --allowed-skips FILE`` (repeatable; ``scripts/test.sh`` passes ``tests/allowed_skips.txt``, and outside CI
also ``tests/allowed_skips_without_data.txt``): a skipped test or test file whose id matches no entry of the FILEs,
or whose skip reason lacks the entry's reason, turns a passing run (exit status 0,
or 5 for no tests) into a failed one (1), and is listed under "unexpected skips". So CI cannot quietly drop the
real-file or browser tests. Expected failures (xfail) are not skips.

FILE: one entry a line, ``<test id> | <text the skip reason must contain>``; ``*`` in the test id matches any text;
blank lines and lines starting with ``#`` are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SECTION = "unexpected skips"


@dataclass(frozen=True)
class AllowedSkip:
    """One allow-list entry: a test id pattern and the text its skip reason must contain."""

    pattern: re.Pattern[str]
    reason: str

    def allows(self, nodeid: str, reason: str) -> bool:
        return bool(self.pattern.fullmatch(nodeid)) and self.reason in reason


def read_allowed_skips(path: Path) -> list[AllowedSkip]:
    """Parse an allow-list file (see the module docstring); a malformed line is an error naming the file and line."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise pytest.UsageError(f"--allowed-skips: {path} does not exist") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        test_id, sep, reason = (part.strip() for part in line.partition("|"))
        if not (sep and test_id and reason):
            raise pytest.UsageError(f"{path}:{number}: expected '<test id> | <skip reason>', got {line!r}")
        pattern = re.compile(".*".join(re.escape(part) for part in test_id.split("*")))
        entries.append(AllowedSkip(pattern, reason))
    return entries


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    """The reason a skipped report gives (``Skipped: ...`` for pytest.skip, the mark's reason for skip marks)."""
    longrepr = report.longrepr
    return str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)


class SkipGuard:
    """Collect the skips the allow-list does not allow; fail the run if there are any."""

    def __init__(self, allowed: list[AllowedSkip]):
        self.allowed = allowed
        self.unexpected: list[str] = []

    def _check(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if not report.skipped or hasattr(report, "wasxfail"):
            return
        reason = skip_reason(report)
        if not any(entry.allows(report.nodeid, reason) for entry in self.allowed):
            self.unexpected.append(f"{report.nodeid}: {reason}")

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._check(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._check(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unexpected and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:  # noqa: ANN001 - pytest's TerminalReporter
        if not self.unexpected:
            return
        terminalreporter.section(SECTION, red=True)
        for line in self.unexpected:
            terminalreporter.line(line)
        terminalreporter.line("Fix the cause, or allow the skip in the --allowed-skips file with its reason.")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("skip guard").addoption(
        "--allowed-skips",
        metavar="FILE",
        type=Path,
        action="append",
        help="fail the run on a skip that no FILE allows (lines '<test id, * wildcards> | <reason text>'); repeatable",
    )


def pytest_configure(config: pytest.Config) -> None:
    paths = config.getoption("allowed_skips")
    if paths:
        allowed = [entry for path in paths for entry in read_allowed_skips(path)]
        config.pluginmanager.register(SkipGuard(allowed), "skip_guard_instance")
