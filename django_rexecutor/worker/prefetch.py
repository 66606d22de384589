"""The prefetch buffer: jobs claimed ahead of free slots, waiting in the worker to start.

With a backlog of short jobs, a worker that claims only as many jobs as it has free slots
spends its time on round trips: every few jobs wait for a claim. Claiming ahead lets a slot
that frees start the next job at once, from memory, and lets one claim round trip serve many
jobs. The buffer is bounded and grows with the backlog: it starts empty, doubles (from one
``concurrency``'s worth up to ``limit``) while claims come back full, and is not refilled
once a claim comes back short — so a worker that only sees the odd job claims only what it
runs, and a quiet queue is never hoarded by one worker.

A buffered job is executing under the worker's id in the database (no other worker can take
it) but has not started: if the worker stops, it is given back with its attempt unused — at
once by a graceful stop, by rescue (``Backend.record_claimed_ahead``) if the worker died.
Jobs start in priority order across the buffer and each new claim. Main thread only."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from ..job import Job


def start_order(job: Job) -> tuple[int, object, int]:
    """The claim's order: priority, then due time, then id."""
    return (job.priority, job.scheduled_at, job.id)


class Prefetch:
    """At most ``limit`` jobs claimed ahead of free slots; ``step`` is the first size the
    buffer grows to (the worker's concurrency)."""

    def __init__(self, limit: int, step: int) -> None:
        if limit < 0:
            raise ValueError(f"prefetch must be >= 0, got {limit}")
        self.limit = limit
        self.step = max(1, min(step, limit)) if limit else 0
        #: How many jobs to hold ahead now: 0 until a claim shows a backlog.
        self.target = 0
        self._heap: list[tuple[tuple[int, object, int], Job]] = []
        #: The ids last written with ``record_claimed_ahead`` (what rescue would give back).
        self.recorded: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def job_ids(self) -> set[int]:
        return {job.id for _, job in self._heap}

    def room(self) -> int:
        """How many more jobs the next claim may take ahead of free slots: none until the
        buffer is down to half its size, so claims come in batches, not one job at a time."""
        if len(self._heap) > self.target // 2:
            return 0
        return self.target - len(self._heap)

    def backlog_seen(self) -> None:
        """A claim came back full: there is more, hold more ahead."""
        if self.limit:
            self.target = min(self.limit, max(self.step, self.target * 2))

    def backlog_gone(self) -> None:
        """A claim came back short: claim no more than the slots until it fills again."""
        self.target = 0

    def add(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            heapq.heappush(self._heap, (start_order(job), job))

    def take(self, capacity: Mapping[str, int], free: int) -> list[Job]:
        """Remove and return the jobs to start now, in order, within ``free`` slots and each
        executor's room in ``capacity``; a job whose executor has no room stays (and keeps its
        place), the ones behind it may start."""
        if not self._heap or free <= 0:
            return []
        room = dict(capacity)
        taken: list[Job] = []
        kept: list[tuple[tuple[int, object, int], Job]] = []
        while self._heap and len(taken) < free:
            entry = heapq.heappop(self._heap)
            job = entry[1]
            if room.get(job.executor, 0) > 0:
                room[job.executor] -= 1
                taken.append(job)
            else:
                kept.append(entry)
        for entry in kept:
            heapq.heappush(self._heap, entry)
        return taken

    def remove(self, job_ids: Iterable[int]) -> list[Job]:
        """Take the given jobs out of the buffer (cancel requests); returns those found."""
        wanted = set(job_ids)
        removed = [job for _, job in self._heap if job.id in wanted]
        if removed:
            self._heap = [entry for entry in self._heap if entry[1].id not in wanted]
            heapq.heapify(self._heap)
        return removed

    def take_all(self) -> list[Job]:
        """Empty the buffer (the worker stops, or may no longer start jobs)."""
        jobs = [job for _, job in sorted(self._heap, key=lambda entry: entry[0])]
        self._heap = []
        self.target = 0
        return jobs
