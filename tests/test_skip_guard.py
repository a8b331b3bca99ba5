"""The suite's skip guard (tests/skip_guard.py): a skip the allow-list does not name fails the run."""

from __future__ import annotations

import pytest
from skip_guard import read_allowed_skips

pytest_plugins = ("pytester",)

SKIPPING = """
import pytest

def test_runs():
    assert True

@pytest.mark.parametrize("name", ["edf", "odd.EDF"])
def test_reader(name):
    if name == "odd.EDF":
        pytest.skip("odd.EDF is not a continuous EDF")
"""


def run(pytester: pytest.Pytester, allowed: str, source: str = SKIPPING) -> pytest.RunResult:
    pytester.makepyfile(test_tiny=source)
    pytester.path.joinpath("allowed.txt").write_text(allowed)
    return pytester.runpytest("-p", "skip_guard", "--allowed-skips", "allowed.txt")


def test_a_skip_outside_the_allow_list_fails_the_run(pytester):
    result = run(pytester, "# nothing allowed\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*unexpected skips*", "test_tiny.py::test_reader?odd.EDF?: Skipped: odd.EDF is not*"])


def test_an_allowed_skip_passes(pytester):
    result = run(pytester, "test_tiny.py::test_reader[*.EDF] | is not a continuous EDF\n")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=2, skipped=1)
    assert "unexpected skips" not in result.stdout.str()


def test_an_allowed_test_skipping_for_another_reason_fails(pytester):
    result = run(pytester, "test_tiny.py::test_reader[*.EDF] | the real recordings folder is absent\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_brackets_in_a_test_id_are_literal(pytester):
    result = run(pytester, "test_tiny.py::test_reader[odd.EDF*] | is not\n")  # no glob character class
    assert result.ret == pytest.ExitCode.OK
    assert run(pytester, "test_tiny.py::test_reader[o] | is not\n").ret == pytest.ExitCode.TESTS_FAILED


def test_allow_lists_given_several_times_are_combined(pytester):
    pytester.makepyfile(test_tiny=SKIPPING)
    pytester.path.joinpath("none.txt").write_text("# nothing allowed here\n")
    pytester.path.joinpath("local.txt").write_text("test_tiny.py::test_reader[*.EDF] | is not a continuous EDF\n")
    alone = pytester.runpytest("-p", "skip_guard", "--allowed-skips", "none.txt")
    both = pytester.runpytest("-p", "skip_guard", "--allowed-skips", "none.txt", "--allowed-skips", "local.txt")
    assert alone.ret == pytest.ExitCode.TESTS_FAILED and both.ret == pytest.ExitCode.OK


def test_a_file_skipped_at_collection_fails_even_with_no_test_left(pytester):
    result = run(pytester, "", source="import pytest\npytest.importorskip('no_such_module_here')\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # not 5 ("no tests"), which scripts/test.sh counts as success
    result.stdout.fnmatch_lines(["*unexpected skips*", "test_tiny.py: *no_such_module_here*"])


def test_a_malformed_allow_list_names_the_file_and_line(tmp_path):
    path = tmp_path / "allowed.txt"
    path.write_text("# header\ntests/test_x.py::test_y\n")
    with pytest.raises(pytest.UsageError, match=r"allowed.txt:2: expected '<test id> \| <skip reason>'"):
        read_allowed_skips(path)


def test_the_suite_allow_list_parses_and_names_only_existing_test_files(repo_root):
    entries = (repo_root / "tests" / "allowed_skips.txt").read_text().splitlines()
    files = {line.split("::")[0] for line in entries if line.strip() and not line.startswith("#")}
    assert read_allowed_skips(repo_root / "tests" / "allowed_skips.txt")
    assert all((repo_root / name).is_file() for name in files), files
