"""Suite-wide test configuration.

The stack fixtures live in tests/fixtures/stack.py (a plugin, so any test directory can use
``local_stack`` without importing it). A session in which tests were collected but none passed
(all skipped or deselected) fails with exit code 5, pytest's own "no tests ran" code: a CI run
where everything was skipped proved nothing.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.stack", "tests.fixtures.model_repository"]

_passed = 0


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if session.config.option.collectonly:
        return
    if exitstatus == pytest.ExitCode.OK and _passed == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
