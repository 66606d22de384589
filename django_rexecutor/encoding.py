"""JSON-native validation and stable hashing.

Job payloads are JSON only: values are checked at enqueue time and rejected (never converted),
so what a job sees when it runs is exactly what was enqueued."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from typing import Any

from .exceptions import EncodeDecodeError

JSONValue = Any

#: Deepest nesting of lists and objects a value may have. Deeper values cannot be stored
#: everywhere (SQLite's JSON functions stop at 1000 levels, PostgreSQL at its stack limit)
#: nor be checked and decoded within Python's default recursion limit of 1000 frames.
MAX_DEPTH = 256
#: Most digits of an int: PostgreSQL's ``numeric`` (hence ``jsonb``) holds no more.
MAX_INT_DIGITS = 131_072
#: An int of at most this many bits has fewer digits than any limit Python can be given
#: (``sys.set_int_max_str_digits`` accepts no less than 640), so it needs no further check.
_SHORT_INT_BITS = 2_000


def to_json_native(value: object, *, what: str = "value") -> JSONValue:
    """Return ``value`` as plain JSON data (tuples become lists) or raise
    :class:`EncodeDecodeError` naming the first offending part."""
    return _convert(value, what, 1)


def _check_int(value: int, path: str) -> int:
    if value.bit_length() <= _SHORT_INT_BITS:
        return value
    python_limit = sys.get_int_max_str_digits()
    limit = min(MAX_INT_DIGITS, python_limit or MAX_INT_DIGITS)
    try:
        digits = str(len(str(abs(value))))
    except ValueError:  # longer than Python's limit: it could never be written as JSON text
        digits = f"more than {python_limit}"
    else:
        if int(digits) <= limit:
            return value
    raise EncodeDecodeError(
        f"{path} is an int of {digits} digits; JSON stored here takes at most {limit}. "
        "Store it as a string."
    )


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


def _short(path: str) -> str:
    return path if len(path) <= 60 else path[:60] + "…"


def _convert(value: object, path: str, depth: int) -> JSONValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _check_text(value, path)
    if isinstance(value, int):
        if type(value) is not int and not isinstance(value, bool):
            # int subclasses such as IntEnum would be stored as plain ints; be explicit.
            return _check_int(int(value), path)
        return _check_int(value, path)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EncodeDecodeError(
                f"{path} is {value!r}: NaN and infinities are not valid JSON; use None or a string."
            )
        return value
    if isinstance(value, (dict, list, tuple)) and depth > MAX_DEPTH:
        raise EncodeDecodeError(
            f"{_short(path)} is nested more than {MAX_DEPTH} lists or objects deep; flatten the value "
            "(or store the deep part as a JSON string)."
        )
    if isinstance(value, dict):
        out: dict[str, JSONValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodeDecodeError(
                    f"{path} has the key {key!r} of type {type(key).__name__}: JSON object keys"
                    " must be strings."
                )
            out[_check_text(key, f"{path} key")] = _convert(item, f"{path}[{key!r}]", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
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


#: The JSON columns' text (sorted keys, ASCII, as ``CanonicalJSONEncoder`` writes them), which
#: raw SQL sends and ``MAX_PAYLOAD_BYTES`` measures.
to_json = json.JSONEncoder(sort_keys=True).encode


class CanonicalJSONEncoder(json.JSONEncoder):
    """Encoder for the job model's JSON columns: sorted keys make exact-equality lookups agree
    on SQLite (text comparison) and PostgreSQL (``jsonb`` comparison)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["sort_keys"] = True
        super().__init__(*args, **kwargs)
