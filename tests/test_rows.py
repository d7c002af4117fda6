"""The data axis deals sentences (`lig_jax/mesh/rows.py`): every item once, results kept on
the calling thread, and a stop lets the running items finish and be kept."""

from __future__ import annotations

import threading
import time

import pytest

from lig_jax.mesh import rows


def test_every_item_is_done_once_and_kept_on_the_calling_thread() -> None:
    me = threading.get_ident()
    seen: list[tuple[str, int]] = []
    kept: list[int] = []
    busy: dict[str, int] = {}
    lock = threading.Lock()

    def work(worker: str, item: int) -> int:
        with lock:
            busy[worker] = busy.get(worker, 0) + 1
            assert busy[worker] == 1, "a worker took two items at once"
        time.sleep(0.002 * (item % 3))
        with lock:
            busy[worker] -= 1
            seen.append((worker, item))
        return item * item

    def keep(item: int, result: int) -> None:
        assert threading.get_ident() == me and result == item * item
        kept.append(item)

    rows.over_rows(["a", "b", "c"], range(20), work, keep)
    assert sorted(kept) == list(range(20))
    assert len({w for w, _ in seen}) == 3  # the work was dealt


def test_one_worker_runs_in_order_on_this_thread() -> None:
    me = threading.get_ident()
    order: list[int] = []

    def work(_w: str, item: int) -> int:
        assert threading.get_ident() == me
        return item

    rows.over_rows(["only"], [3, 1, 2], work, lambda i, _r: order.append(i))
    assert order == [3, 1, 2]


def test_a_stop_finishes_and_keeps_the_running_items_and_starts_no_more() -> None:
    started: list[int] = []
    kept: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    def work(_w: str, item: int) -> int:
        with lock:
            started.append(item)
        if item != 0:
            release.wait(5)  # items 1 and 2 are still running when item 0 is kept
        return item

    def after() -> None:
        release.set()
        raise KeyboardInterrupt  # as the CLI's Ctrl-C check does

    with pytest.raises(KeyboardInterrupt):
        rows.over_rows(["a", "b", "c"], range(10), work, lambda i, _r: kept.append(i), after)
    assert sorted(started) == [0, 1, 2]  # nothing started after the stop
    assert sorted(kept) == [0, 1, 2]  # the running ones were finished and kept


def test_a_failing_item_propagates_after_the_others_are_kept() -> None:
    kept: list[int] = []

    def work(_w: str, item: int) -> int:
        if item == 1:
            raise ValueError("bad item")
        time.sleep(0.01)
        return item

    with pytest.raises(ValueError, match="bad item"):
        rows.over_rows(["a", "b"], range(4), work, lambda i, _r: kept.append(i))
    assert 0 in kept and 1 not in kept
