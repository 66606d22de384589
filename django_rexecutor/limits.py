"""Flow control values: ``RateLimit``, an executor's effective ``Limits``, and partition keys.

An executor may set ``global_concurrency`` (most of its jobs executing at once across the
cluster), ``rate_limit`` (most starts in any window of ``period``) and ``partition_by`` (paths
into the job's data or metadata; both limits then hold per distinct value).
``REXECUTOR["LIMITS"]`` overrides them per executor name. The backend enforces them when it
claims (see ``docs/flow-control.md``); this module only describes them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .encoding import to_json
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .executor import Executor

#: Keys of one ``REXECUTOR["LIMITS"]`` entry.
LIMIT_KEYS = ("global_concurrency", "rate_limit", "partition_by")
#: The roots a ``partition_by`` path may start at.
PARTITION_ROOTS = ("data", "metadata")
#: The partition key of jobs whose executor has no ``partition_by``.
NO_PARTITION = ""


@dataclass(frozen=True)
class RateLimit:
    """At most ``allowed`` job starts in any window of ``period`` (a ``timedelta`` or
    seconds), across the cluster (per partition with ``partition_by``)."""

    allowed: int
    period: timedelta

    def __init__(self, allowed: int, period: timedelta | float) -> None:
        if isinstance(allowed, bool) or not isinstance(allowed, int) or allowed < 1:
            raise ConfigurationError(f"RateLimit(allowed=) must be an int >= 1, got {allowed!r}.")
        if isinstance(period, (int, float)) and not isinstance(period, bool):
            period = timedelta(seconds=period)
        if not isinstance(period, timedelta) or not period > timedelta(0):
            raise ConfigurationError(
                f"RateLimit(period=) must be a positive timedelta or number of seconds, "
                f"got {period!r}."
            )
        object.__setattr__(self, "allowed", allowed)
        object.__setattr__(self, "period", period)


@dataclass(frozen=True)
class Limits:
    """The limits the claim enforces for one executor."""

    global_concurrency: int | None = None
    rate_limit: RateLimit | None = None
    partition_by: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether the claim must count anything (``partition_by`` alone limits nothing)."""
        return self.global_concurrency is not None or self.rate_limit is not None

    def per_partition(self) -> int:
        """Most jobs one partition may start in one claim when nothing of it runs."""
        bounds = [self.global_concurrency or 0, self.rate_limit.allowed if self.rate_limit else 0]
        return min(b for b in bounds if b) if any(bounds) else 0


NO_LIMITS = Limits()


def check_global_concurrency(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{where} must be a positive int or None, got {value!r}.")
    return value


def check_rate_limit(value: Any, where: str) -> RateLimit | None:
    """``value`` as a ``RateLimit``: one already, or a dict ``{"allowed": …, "period": …}``."""
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, Mapping) and set(value) == {"allowed", "period"}:
        try:
            return RateLimit(value["allowed"], value["period"])
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
    raise ConfigurationError(
        f"{where} must be a RateLimit(allowed=, period=), a dict with exactly the keys "
        f"'allowed' and 'period', or None; got {value!r}."
    )


def check_partition_by(value: Any, where: str) -> tuple[str, ...]:
    """``value`` (a path or a tuple/list of paths) as a tuple of checked paths."""
    if value is None:
        return ()
    paths = (value,) if isinstance(value, str) else value
    if not isinstance(paths, (tuple, list)) or not paths:
        raise ConfigurationError(
            f"{where} must be a path like 'data.account_id' or a tuple of such paths, "
            f"got {value!r}."
        )
    for path in paths:
        parts = path.split(".") if isinstance(path, str) else []
        if len(parts) < 2 or parts[0] not in PARTITION_ROOTS or not all(parts):
            raise ConfigurationError(
                f"{where}: {path!r} is not a partition path; write 'data.<key>[.<key>…]' "
                "or 'metadata.<key>[.<key>…]'."
            )
    return tuple(paths)


def limits_from(
    global_concurrency: Any = None,
    rate_limit: Any = None,
    partition_by: Any = None,
    *,
    where: Callable[[str], str],
) -> Limits:
    """Checked ``Limits``; ``where(key)`` names a setting in error messages."""
    return Limits(
        check_global_concurrency(global_concurrency, where("global_concurrency")),
        check_rate_limit(rate_limit, where("rate_limit")),
        check_partition_by(partition_by, where("partition_by")),
    )


def limits_of(executor: type[Executor]) -> Limits:
    """The executor's class attributes, overridden by its ``REXECUTOR["LIMITS"]`` entry."""
    from .conf import rexecutor_settings

    values = {
        "global_concurrency": executor.global_concurrency,
        "rate_limit": executor.rate_limit,
        "partition_by": executor.partition_by,
    }
    override = rexecutor_settings.LIMITS.get(executor.name)
    if isinstance(override, Mapping):
        values.update({k: v for k, v in override.items() if k in LIMIT_KEYS})
    return limits_from(**values, where=lambda key: setting_name(executor.name, key))


def setting_name(executor: str, key: str) -> str:
    return f'REXECUTOR["LIMITS"][{executor!r}][{key!r}]'


def partition_paths(executor: type[Executor]) -> tuple[str, ...]:
    """The executor's effective ``partition_by`` (cheap when it has none: called per enqueue)."""
    from .conf import rexecutor_settings

    override = rexecutor_settings.LIMITS.get(executor.name)
    if executor.partition_by is None and not override:
        return ()
    return limits_of(executor).partition_by


def partition_value(path: str, data: Any, metadata: Any) -> Any:
    """The value at ``path`` (``data.a.b``) in a job's payloads; ``None`` where it is missing."""
    root, *keys = path.split(".")
    value = data if root == "data" else metadata
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def partition_key(paths: tuple[str, ...], data: Any, metadata: Any) -> str:
    """The stored key of a job's partition: a hash of the canonical JSON of its values
    (fixed length, indexable, the same for equal values whatever their type's spelling);
    ``NO_PARTITION`` without paths."""
    if not paths:
        return NO_PARTITION
    values = [partition_value(p, data, metadata) for p in paths]
    return hashlib.sha256(to_json(values).encode()).hexdigest()[:32]
