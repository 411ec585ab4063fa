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
