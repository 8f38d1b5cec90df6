"""The committer thread (app/store/batch.py): batches, one answer each, and the busy rule."""

from __future__ import annotations

import asyncio
import threading

from app.store.base import StorageBusy, StorageUnavailable
from app.store.batch import Committer, Ticket


def test_requests_handed_over_while_a_commit_runs_are_committed_together() -> None:
    release, batches = threading.Event(), []

    def commit(tickets: list[Ticket[int, int]]) -> None:
        batches.append([t.item for t in tickets])
        if tickets[0].item == 0:
            assert release.wait(10)  # the first batch holds the thread until the rest are queued
        for ticket in tickets:
            ticket.settle(ticket.item * 10)

    committer: Committer[int, int] = Committer(commit, timeout=10)

    async def main() -> list[int]:
        first = asyncio.ensure_future(committer.submit(Ticket(0)))
        while not batches:
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(committer.submit(Ticket(n))) for n in (1, 2, 3)]
        while len(committer._queue) < 3:
            await asyncio.sleep(0.001)
        release.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == [0, 10, 20, 30]
    assert batches == [[0], [1, 2, 3]]
    committer.stop()


def test_a_request_not_taken_in_time_is_busy_and_one_taken_waits_for_its_outcome() -> None:
    release = threading.Event()

    def commit(tickets: list[Ticket[int, int]]) -> None:
        assert release.wait(10)
        for ticket in tickets:
            ticket.settle(ticket.item)

    committer: Committer[int, int] = Committer(commit, timeout=0.2)

    async def main() -> tuple[object, object]:
        taken = asyncio.ensure_future(committer.submit(Ticket(1)))
        while committer._queue or committer._thread is None:  # the thread took it and is committing
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(committer.submit(Ticket(2)))
        busy = await asyncio.gather(queued, return_exceptions=True)
        release.set()  # only now: the taken one waited past its timeout for its batch's outcome
        return busy[0], await taken

    busy, stored = asyncio.run(main())
    assert isinstance(busy, StorageBusy)
    assert stored == 1
    committer.stop()


def test_a_failed_commit_fails_each_request_it_did_not_settle() -> None:
    release, batches = threading.Event(), []

    def commit(tickets: list[Ticket[int, int]]) -> None:
        batches.append(len(tickets))
        if tickets[0].item == 0:
            assert release.wait(10)
        tickets[0].settle(tickets[0].item)  # decided before the write failed: its answer stands
        raise OSError("disk gone")

    committer: Committer[int, int] = Committer(commit, timeout=10)

    async def main() -> list[object]:
        first = asyncio.ensure_future(committer.submit(Ticket(0)))
        while not batches:
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(committer.submit(Ticket(n))) for n in (1, 2)]
        while len(committer._queue) < 2:
            await asyncio.sleep(0.001)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    first, second, third = asyncio.run(main())
    assert (first, second) == (0, 1)
    assert isinstance(third, StorageUnavailable) and "disk gone" in str(third)
    assert committer.wait(Ticket(5)) == 5  # a thread's request: the same path, blocking
    committer.stop()


def test_a_commit_takes_what_was_handed_over_while_it_waited_and_answers_it_with_its_batch() -> None:
    """take_more, from within a commit (as one that waited for a lock calls it): the requests
    queued meanwhile join the batch, are settled by it and woken with it; a failure after they
    joined reaches them too."""
    waiting, release, batches = threading.Event(), threading.Event(), []

    def commit(tickets: list[Ticket[int, int]]) -> None:
        waiting.set()
        assert release.wait(10)  # "the lock": the rest are handed over meanwhile
        joined = committer.take_more()
        tickets = tickets + joined
        batches.append([t.item for t in tickets])
        for ticket in tickets:
            if ticket.item == 3:
                raise OSError("disk gone")  # after 0, 1 and 2 are settled
            ticket.settle(ticket.item * 10)

    committer: Committer[int, int] = Committer(commit, timeout=10)

    async def main() -> list[object]:
        first = asyncio.ensure_future(committer.submit(Ticket(0)))
        while not waiting.is_set():
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(committer.submit(Ticket(n))) for n in (1, 2, 3)]
        while len(committer._queue) < 3:
            await asyncio.sleep(0.001)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert batches == [[0, 1, 2, 3]]  # one batch, one commit
    assert outcomes[:3] == [0, 10, 20]
    assert isinstance(outcomes[3], StorageUnavailable)
    committer.stop()
