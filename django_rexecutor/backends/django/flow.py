"""Flow control in the claim: limited executors' claims, and the pause state.

An executor without limits is claimed by the engine's one statement (``Engine.claim``), which
only learns to skip paused executors. A limited executor (``global_concurrency`` and/or
``rate_limit``) is claimed in a short transaction of its own:

1. lock its row in ``ExecutorLimitRecord`` (``SELECT … FOR UPDATE``; the row is created on the
   first claim), so claims of this executor by racing workers run one after the other;
2. in new statements (under READ COMMITTED each sees what the previous holder committed),
   count its executing jobs and its starts within the rate limit's period, per partition;
3. select its most urgent ready jobs with the shared candidate builder, leaving out the
   partitions at their limit, and keep at most each partition's remainder; repeat a few
   times with the partitions just filled left out, so one busy partition cannot hide the
   others behind it;
4. claim those jobs (``Engine.claim_ids``), record their starts, commit.

Everything here is ORM or the engine's; on SQLite, where the IMMEDIATE transaction is the
only writer, the lock row is merely redundant."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.db.models.functions import Now

from ...limits import Limits
from ...models import ExecutorLimitRecord, JobStartRecord, PausedExecutorRecord
from ...status import READY_STATUSES, JobStatus
from .base import DjangoBase
from .engines.base import claim_candidates_sql

READY = sorted(READY_STATUSES)
#: Candidate selects per limited claim: each leaves out the partitions the previous filled.
ROUNDS = 4
#: Candidates per select, as a multiple of the jobs still wanted (a few partitions' worth).
OVERSELECT = 4


class FlowControl(DjangoBase):
    def claim_limited(
        self, worker_id: str, executor: str, wanted: int, limits: Limits
    ) -> list[Any]:
        """Claim up to ``wanted`` jobs of a limited ``executor``; the claimed rows."""
        with self._atomic():
            self._lock_limit(executor)
            rate = limits.rate_limit
            partitioned = bool(limits.partition_by)

            def key(p: str) -> str:
                return p if partitioned else ""

            running: Counter[str] = Counter()
            if limits.global_concurrency is not None:
                rows = (
                    self.jobs.filter(executor=executor, status=JobStatus.EXECUTING)
                    .values_list("partition_key")
                    .annotate(n=Count("id"))
                )
                for p, n in rows:
                    running[key(p)] += n
            started: Counter[str] = Counter()
            if rate is not None:
                since = self.engine.current_time() - rate.period
                starts = JobStartRecord.objects.using(self.alias).filter(executor=executor)
                starts.filter(started_at__lte=since).delete()
                recent = (
                    starts.filter(started_at__gt=since)
                    .values_list("partition_key")
                    .annotate(n=Count("id"))
                )
                for p, n in recent:
                    started[key(p)] += n

            def remainder(p: str) -> int:
                bounds = [wanted]
                if limits.global_concurrency is not None:
                    bounds.append(limits.global_concurrency - running[p])
                if rate is not None:
                    bounds.append(rate.allowed - started[p])
                return max(0, min(bounds))

            chosen: list[tuple[int, str]] = []
            if not partitioned:
                n = remainder("")
                if n:
                    chosen = self._candidates(executor, n, ())
            else:
                taken: Counter[str] = Counter()
                full = {p for p in {*running, *started} if remainder(p) <= 0}
                for _ in range(ROUNDS):
                    still = wanted - len(chosen)
                    if still <= 0:
                        break
                    picked = {i for i, _p in chosen}
                    found = self._candidates(executor, still * OVERSELECT, full)
                    found = [(i, p) for i, p in found if i not in picked]
                    if not found:
                        break
                    for job_id, p in found:
                        if len(chosen) < wanted and taken[p] < remainder(p):
                            chosen.append((job_id, p))
                            taken[p] += 1
                        if taken[p] >= remainder(p):
                            full.add(p)
            claimed = self.engine.claim_ids(worker_id, [i for i, _p in chosen])
            if rate is not None and claimed:
                ids = [row[0] for row in claimed]
                started_at = self.jobs.filter(pk__in=ids).values_list(
                    "partition_key", "attempted_at"
                )
                JobStartRecord.objects.using(self.alias).bulk_create(
                    JobStartRecord(executor=executor, partition_key=p, started_at=at)
                    for p, at in started_at
                    if at is not None
                )
            return claimed

    def has_due_jobs(self, executor: str) -> bool:
        """Whether ``executor`` (not paused) has a job due now: one index probe, so that an
        idle limited executor costs its workers no claim transaction per round."""
        paused = PausedExecutorRecord.objects.using(self.alias).values("executor")
        due = self.jobs.filter(executor=executor, status__in=READY, scheduled_at__lte=Now())
        return due.exclude(executor__in=paused).exists()

    def _lock_limit(self, executor: str) -> None:
        """Lock the executor's limit row until the transaction ends, creating it if needed
        (a concurrent creator wins the insert; we then lock its row like any claim)."""
        rows = ExecutorLimitRecord.objects.using(self.alias)

        def lock() -> bool:
            # A new QuerySet each time: an evaluated one answers from its cache, unlocked.
            locked = rows.select_for_update().filter(executor=executor).values_list("executor")
            return bool(list(locked))

        if lock():
            return
        try:
            with transaction.atomic(using=self.alias):  # a savepoint: a lost race is harmless
                rows.create(executor=executor)
        except IntegrityError:
            if not lock():  # pragma: no cover - the winner's row cannot disappear
                raise
        # Our own new row: locked by its insert until we commit.

    def _candidates(self, executor: str, n: int, full: Collection[str]) -> list[tuple[int, str]]:
        """Up to ``n`` ready jobs of ``executor`` outside the partitions ``full``, most urgent
        first: (id, partition key)."""
        sql, params = claim_candidates_sql(
            self.engine, {executor: n}, n, skip_partitions=full, columns="id, partition_key"
        )
        with self.engine.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [(int(i), str(p)) for i, p in cursor.fetchall()]

    # -- pause and resume -------------------------------------------------------------------
    def pause_executors(self, names: Collection[str]) -> None:
        paused = PausedExecutorRecord.objects.using(self.alias)
        with self._atomic():
            known = set(paused.filter(executor__in=list(names)).values_list("executor", flat=True))
            paused.bulk_create(
                [PausedExecutorRecord(executor=n) for n in sorted(set(names) - known)],
                ignore_conflicts=True,
            )

    def resume_executors(self, names: Collection[str]) -> None:
        PausedExecutorRecord.objects.using(self.alias).filter(executor__in=list(names)).delete()

    def paused_executors(self) -> set[str]:
        return set(
            PausedExecutorRecord.objects.using(self.alias).values_list("executor", flat=True)
        )


def limited(wanted: Mapping[str, int], limits: Mapping[str, Limits] | None) -> dict[str, Limits]:
    """The executors of ``wanted`` whose claims must count (``Limits.active``)."""
    if not limits:
        return {}
    return {n: lim for n in wanted if (lim := limits.get(n)) is not None and lim.active}
