"""Python's garbage collector during fit: paused on a small cohort, resumed after."""

import gc
import os
import threading

import pytest
from conftest import Explode, fit_probed, recorded_in_training

from sk_i2m2 import _gc, _sizing


@pytest.fixture(autouse=True)
def collector_running():
    """Every test starts with the collector running and leaves it running."""
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    assert _gc._depth == 0
    if not was_enabled:
        gc.disable()
    else:
        gc.enable()


def fit_small(**params):
    return fit_probed("gc_enabled", gc.isenabled, **params)[0]


def collector_in_training(clf):
    return recorded_in_training(clf, "gc_enabled")


def test_a_small_cohort_trains_with_the_collector_paused_and_resumes_it():
    clf = fit_small()
    assert clf.n_folds_ == 5
    assert collector_in_training(clf) == {False}
    assert gc.isenabled()


def test_the_collector_resumes_after_an_error():
    with pytest.raises(RuntimeError, match="boom"):
        fit_small(callbacks=[Explode()])
    assert gc.isenabled()


def test_a_collector_the_user_disabled_stays_disabled():
    gc.disable()
    clf = fit_small()
    assert collector_in_training(clf) == {False}
    assert not gc.isenabled()


def test_a_large_data_set_trains_with_the_collector_running(monkeypatch):
    monkeypatch.setattr(_sizing, "SMALL_COHORT", 100)  # 120 rows are large data now
    clf = fit_small(cv=None)
    assert clf.optimizer_.__name__ != "LBFGS"  # the mini-batch regime of large data
    assert collector_in_training(clf) == {True}
    assert gc.isenabled()


def test_nested_blocks_pause_once_and_resume_at_the_outermost_end():
    with pytest.raises(RuntimeError, match="boom"):
        with _gc.collector_paused():
            with _gc.collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
            raise RuntimeError("boom")
    assert gc.isenabled()
    with _gc.collector_paused(False):
        assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_in_a_block_collects_as_before_the_block():
    read, write = os.pipe()
    with _gc.collector_paused():
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without unwinding
            os.write(write, b"1" if gc.isenabled() else b"0")
            os._exit(0)
        assert not gc.isenabled()
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and os.waitstatus_to_exitcode(status) == 0
    os.close(read)
    assert gc.isenabled()


def test_blocks_of_two_threads_resume_when_the_last_one_ends():
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def other_fit():
        with _gc.collector_paused():
            entered.set()
            release.wait(timeout=10)
        seen["after_other"] = gc.isenabled()

    with _gc.collector_paused():
        worker = threading.Thread(target=other_fit)
        worker.start()
        assert entered.wait(timeout=10)
    # This block ended first; the other thread's block still runs.
    assert not gc.isenabled()
    release.set()
    worker.join(timeout=10)
    assert seen == {"after_other": True}
    assert gc.isenabled()
