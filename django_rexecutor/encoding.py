"""JSON-native validation and stable hashing.

Job payloads are JSON only: values are checked at enqueue time and rejected (never converted),
so what a job sees when it runs is exactly what was enqueued."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
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
    if value is None:
        return None
    kind = type(value)
    if kind is dict or kind is list:
        try:
            return _copy_plain(value, 1)  # type: ignore[arg-type]
        except _NotPlain:
            pass  # the full walk converts it, or names what is wrong
    return _convert(value, what, 1)


class _NotPlain(Exception):
    """``_copy_plain`` met something it does not decide itself."""


def _copy_plain(value: dict[Any, Any] | list[Any], depth: int) -> JSONValue:
    """A copy of ``value`` when it holds only exact dicts, lists and ASCII strings, ints,
    floats, bools and ``None`` that pass ``_convert``'s checks (what payloads almost always
    are), else ``_NotPlain``: the common case costs no per-value function calls or paths."""
    if depth > MAX_DEPTH:
        raise _NotPlain
    out: Any
    if type(value) is dict:
        out = value.copy()
        pairs = out.items()
    else:
        out = value.copy()
        pairs = enumerate(out)
    for key, item in pairs:
        if type(key) is str and ("\x00" in key or not key.isascii()):
            raise _NotPlain
        kind = type(item)
        if kind is str:
            if "\x00" in item or not item.isascii():
                raise _NotPlain
        elif kind is int:
            if item.bit_length() > _SHORT_INT_BITS:
                raise _NotPlain
        elif kind is float:
            if not math.isfinite(item):
                raise _NotPlain
        elif kind is dict or kind is list:
            out[key] = _copy_plain(item, depth + 1)  # replaces a value: no resize
        elif item is not None and kind is not bool:
            raise _NotPlain
    if type(out) is dict and not _STR_KEYS.issuperset(map(type, out)):
        raise _NotPlain
    return out


_STR_KEYS = frozenset({str})


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


def _make_to_json() -> Callable[[JSONValue], str]:
    encoder = json.JSONEncoder(sort_keys=True)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator
        return encoder.encode
    # ``encoder.encode``'s C encoder, with its arguments, built once instead of per value. No
    # circular-reference markers (a shared dict would not be thread-safe): the values encoded
    # here passed ``to_json_native``, whose depth limit no cycle passes.
    encode = make(
        None,
        encoder.default,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        True,
        False,
        True,
    )
    join = "".join

    def to_json(value: JSONValue) -> str:
        return join(encode(value, 0))

    return to_json


#: The JSON columns' text (sorted keys, ASCII, as ``CanonicalJSONEncoder`` writes them), which
#: raw SQL sends and ``MAX_PAYLOAD_BYTES`` measures.
to_json = _make_to_json()


class CanonicalJSONEncoder(json.JSONEncoder):
    """Encoder for the job model's JSON columns: sorted keys make exact-equality lookups agree
    on SQLite (text comparison) and PostgreSQL (``jsonb`` comparison)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["sort_keys"] = True
        super().__init__(*args, **kwargs)
