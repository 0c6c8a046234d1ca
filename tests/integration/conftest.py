"""pytest fixtures for the integration tests: `fulcrum` and `backend` start processes, and
teardown kills every one of them by PID, whatever the test did. When a test fails, the stderr of
each fulcrum it started is attached to the failure report."""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402


def pytest_report_header(config):
    return "fulcrum binary: %s" % harness.fulcrum_bin()


def pytest_sessionstart(session):
    path = harness.fulcrum_bin()
    if not os.access(path, os.X_OK):
        pytest.exit("fulcrum binary not found at %s (set FULCRUM_BIN or build first)" % path,
                    returncode=2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for f in getattr(item, "_fulcrums", []):
            state = "running" if f.alive() else "exit code %s" % f.proc.returncode
            rep.sections.append(("fulcrum pid %s (%s) stderr" % (f.pid, state), f.stderr_tail()))
        for b in getattr(item, "_backends", []):
            if b.stderr_path and b.stderr_path.exists() and b.stderr_path.stat().st_size:
                rep.sections.append(("%s stderr" % b.label, b.stderr_path.read_text(errors="replace")))


@pytest.fixture
def fulcrum(request, tmp_path):
    """fulcrum(config, **start_kwargs) -> a running harness.Fulcrum (its listeners open)."""
    started = []
    request.node._fulcrums = started

    def start(config, **kwargs):
        f = harness.Fulcrum(tmp_path / ("fulcrum-%d" % len(started)))
        started.append(f)
        return f.start(config, **kwargs)

    yield start
    # A clean exit is part of every test: SIGTERM, exit 0 within the grace, and no sanitizer
    # report (under `make asan` this finds leaks and undefined behaviour on every path). Whatever
    # happens, each process is killed by PID before the fixture returns.
    problems = []
    for f in started:
        try:
            if f.alive():
                code = f.stop(timeout=15)
                if code != 0:
                    problems.append("fulcrum pid %d: exit code %s after SIGTERM" % (f.pid, code))
            report = harness.sanitizer_report(f.stderr)
            if report:
                problems.append("fulcrum pid %d: sanitizer report:\n%s" % (f.pid, report))
        except AssertionError as e:
            problems.append(str(e))
        finally:
            f.kill()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def backend(request, tmp_path):
    """backend(mode, name, **kwargs) -> a running harness.Backend on a free port."""
    started = []
    request.node._backends = started
    log_dir = tmp_path / "backends"
    log_dir.mkdir(exist_ok=True)

    def start(mode, name="b", **kwargs):
        kwargs.setdefault("log_dir", log_dir)
        b = harness.Backend(mode, name, **kwargs)
        started.append(b)
        return b

    yield start
    for b in started:
        b.kill()


@pytest.fixture
def web(backend, tmp_path):
    """web(name="a", *backend.py args) -> an http backend whose request log the test can read
    (harness.log_lines)."""
    def start(name="a", *args):
        log = tmp_path / ("requests-%s-%d.log" % (name, time.monotonic_ns()))
        b = backend("http", name, extra_args=["--request-log", str(log), *args])
        b.log_path = log
        return b
    return start
