"""Python's garbage collector in a long run (procscope.heap)."""

import gc

from procscope import heap


def test_a_settled_run_freezes_its_start_and_puts_the_collector_back_after():
    before = gc.get_threshold()
    with heap.settled() as full:
        assert gc.isenabled() and gc.get_freeze_count() > 0
        young, _, full_threshold = gc.get_threshold()
        assert young == heap.YOUNG and full_threshold >= 1 << 30  # full collections: full.due()'s only
        full.due()  # not yet due: nothing happens
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_pause_ends_with_the_collector_on_however_the_start_ends():
    try:
        with heap.paused():
            assert not gc.isenabled()
            raise RuntimeError("a start that failed")
    except RuntimeError:
        pass
    assert gc.isenabled()


def test_a_full_collection_waits_for_a_moment_without_keys_or_its_latest_time():
    """The monitor's (0.1 s in a storm): once due, while keys come it waits, up to FULL_LATEST."""
    full = heap.Full()
    collections = lambda: gc.get_stats()[2]["collections"]  # noqa: E731
    before = collections()
    assert not full.due(idle=10.0) and collections() == before  # not due yet
    full._last -= heap.FULL_EVERY
    assert not full.due(idle=0.5) and collections() == before  # due, but a key was just pressed
    assert full.due(idle=heap.IDLE) and collections() == before + 1
    full._last -= heap.FULL_LATEST
    assert full.due(idle=0.0) and collections() == before + 2  # keys all along: at its latest, all the same
    assert not full.due()  # just collected
