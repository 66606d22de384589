"""JSON-native validation and stable hashing.

Job payloads are JSON only: values are checked at enqueue time and rejected (never converted),
so what a job sees when it runs is exactly what was enqueued."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from .exceptions import EncodeDecodeError

JSONValue = Any


def to_json_native(value: object, *, what: str = "value") -> JSONValue:
    """Return ``value`` as plain JSON data (tuples become lists) or raise
    :class:`EncodeDecodeError` naming the first offending part."""
    return _convert(value, what)


def _check_text(text: str, path: str) -> str:
    # Valid JSON, but PostgreSQL's jsonb cannot store NUL characters or lone surrogates; reject
    # them here (on both databases) instead of failing inside the caller's transaction.
    if "\x00" in text:
        raise EncodeDecodeError(f"{path} contains {text!r} with a NUL character (\\x00).")
    try:
        text.isascii() or text.encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeDecodeError(
            f"{path} contains {text!r}, which is not valid Unicode (a lone surrogate)."
        ) from None
    return text


def _convert(value: object, path: str) -> JSONValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _check_text(value, path)
    if isinstance(value, int):
        if type(value) is not int and not isinstance(value, bool):
            # int subclasses such as IntEnum would be stored as plain ints; be explicit.
            return int(value)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodeDecodeError(
                f"{path} is {value!r}: NaN and infinities are not valid JSON; use None or a string."
            )
        return value
    if isinstance(value, dict):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodeDecodeError(
                    f"{path} has the key {key!r} of type {type(key).__name__}: JSON object keys"
                    " must be strings."
                )
            out[_check_text(key, f"{path} key")] = _convert(item, f"{path}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise EncodeDecodeError(
        f"{path} contains {value!r} of type {type(value).__name__}, which is not JSON-native "
        "(allowed: dict with string keys, list, str, int, finite float, bool, None). "
        "Convert it yourself, e.g. a datetime to an ISO string or a Decimal to a string."
    )


def canonical_json(value: JSONValue) -> str:
    """Serialise with sorted keys and no whitespace, so equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_hash(value: JSONValue) -> str:
    """A process-independent hash of JSON data (never Python's salted ``hash()``)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


class CanonicalJSONEncoder(json.JSONEncoder):
    """Encoder for the job model's JSON columns: sorted keys make exact-equality lookups agree
    on SQLite (text comparison) and PostgreSQL (``jsonb`` comparison)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["sort_keys"] = True
        super().__init__(*args, **kwargs)
