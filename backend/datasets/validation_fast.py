"""The steady-state loop of streaming validation: typed decoding of well-formed lines.

Once the file's format is known (a list-of-messages format: v4, OpenAI chat, ShareGPT) and the
preview is full, :func:`fast_loop` decodes each line with a ``msgspec`` decoder typed for the lines
that the full per-line check (``_Validation.one_line``) accepts with nothing to report but
``missing_system_prompt``: the format's top-level keys only (no ``id``, no ShareGPT ``system``), a
non-null ``conversation_id`` string, every message an object with exactly its role and content
keys, a known role, a string content, and ``metadata`` absent, null or a shallow object (see
below). Types, unknown keys and roles are checked in C while decoding; Python then checks what a
type cannot say (blank ids and texts, the order of roles, duplicate ids).

Any line the typed decoder refuses, or whose checks fail, goes through the full check unchanged, so
every issue code and message is exactly the full check's. The typed decoder must therefore never
accept a line that ``orjson.loads`` (the full check's parser) refuses or reads differently; the
differences between the two parsers that matter are closed here:

* integers: orjson reads an integer beyond 64 bits as a float, and refuses one whose float
  overflows; msgspec reads any integer. ``metadata`` values are typed as scalars (integers within
  int64), lists of scalars or objects of scalars: anything else, larger integers or deeper nesting,
  falls back to the full check, whatever it holds.
* invalid UTF-8, lone surrogate escapes, NaN/Infinity, control characters in strings, trailing data:
  both refuse (msgspec with ``UnicodeDecodeError`` / ``DecodeError``); duplicate keys: the last one
  wins in both, except a message's role (the tag of its Struct), where msgspec refuses a second
  value that differs from the first.

Messages decode into one Struct class per raw role (a tagged union), so the role sequence of a line
is ``tuple(map(type, turns))``, cheaper than reading an attribute per turn.

``tests/backend/test_validation_fast.py`` pins these cases.
"""
from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any, Iterator, Union

import msgspec

from backend.datasets.formats import MESSAGE_SPECS, OPTIONAL_KEYS, REQUIRED_KEYS

__all__ = ["DECODERS", "FAST_TOP", "FLUSH", "ROLE_OF", "fast_loop"]

FLUSH = 4096  # accepted conversations / warning lines collected before they are added in bulk

# The top-level keys a line may have to take the fast path (``id`` and ShareGPT's ``system`` need
# the full check: an integer id, a system text to insert).
FAST_TOP = {fmt: frozenset(REQUIRED_KEYS[fmt]) | (frozenset(OPTIONAL_KEYS[fmt]) - {"system", "id"})
            for fmt in MESSAGE_SPECS}

_Int64 = Annotated[int, msgspec.Meta(ge=-(2 ** 63), le=2 ** 63 - 1)]
_Scalar = Union[str, bool, None, _Int64, float]
_Metadata = Union[dict[str, Union[_Scalar, list[_Scalar], dict[str, _Scalar]]], None]


def _decoder(fmt: str) -> msgspec.json.Decoder:
    """A decoder of the lines of ``fmt`` that may take the fast path, into Structs with the same
    attribute names for every format: ``turns``, ``conversation_id`` (``msgspec.UNSET`` when absent,
    for the formats where it is optional), ``metadata``. A message is a Struct of one class per raw
    role (``ROLE_OF`` gives it back), tagged by the role key, with the text as ``content``."""
    spec = MESSAGE_SPECS[fmt]
    messages = []
    for role in spec.role_map:
        message = msgspec.defstruct(f"_{fmt}_{role}", [("content", str, msgspec.field(
            name=spec.content_key))], tag_field=spec.role_key, tag=role, forbid_unknown_fields=True,
            gc=False)
        ROLE_OF[message] = role
        messages.append(message)
    cid: tuple = ("conversation_id", str) if "conversation_id" in REQUIRED_KEYS[fmt] else \
        ("conversation_id", Union[str, msgspec.UnsetType], msgspec.UNSET)
    fields = [("turns", list[Union[tuple(messages)]], msgspec.field(name=spec.list_key)), cid,
              ("metadata", _Metadata, None)]
    names = {spec.list_key, "conversation_id", "metadata"}
    assert names == FAST_TOP[fmt], (fmt, names)  # the Struct takes exactly the fast-path keys
    line = msgspec.defstruct(f"_{fmt}_line", fields, forbid_unknown_fields=True, gc=False)
    return msgspec.json.Decoder(line)


ROLE_OF: dict[type, str] = {}  # message Struct class -> the raw role it stands for
DECODERS: dict[str, msgspec.json.Decoder] = {fmt: _decoder(fmt) for fmt in MESSAGE_SPECS}


class _Slow(Exception):
    """Raised inside the fast loop: let the full per-line check handle this line."""


# What sends a line to the full check: a failed check here, a line the typed decoder refuses
# (DecodeError / ValidationError, UnicodeDecodeError for invalid UTF-8, RecursionError).
_FALLBACK = (_Slow, msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_CONTENT = attrgetter("content")
_UNSET = msgspec.UNSET


def fast_loop(run: Any, lines: Iterator[bytes], line_no: int) -> int:  # noqa: C901 - hot loop
    """Validate ``lines`` (the lines after ``line_no``) for ``run`` (a ``_Validation`` whose format
    is in MESSAGE_SPECS and whose preview is full); returns the number of the last line read."""
    decode, strip = DECODERS[run.fmt].decode, str.strip
    one_line, first_line, batcher = run.one_line, run.seen.setdefault, run.batcher
    by_classes: dict[tuple, tuple] = {}  # message classes -> run._role_info of their roles
    known_roles = by_classes.get
    accepted_ids, accepted_info, warn_lines = run.accepted_ids, run.accepted_info, run.warn_lines
    for raw in lines:
        line_no += 1
        try:
            obj = decode(raw)
            cid, turns = obj.conversation_id, obj.turns
            if cid is _UNSET:  # optional in this format
                cid = None
            elif not strip(cid):
                raise _Slow
            classes = tuple(map(type, turns))
            info = known_roles(classes)
            if info is None:
                info = _role_info(run, classes, by_classes)
            if not info:
                raise _Slow
            if batcher is None:
                if not all(map(strip, map(_CONTENT, turns))):
                    raise _Slow
            else:
                contents = list(map(_CONTENT, turns))
                if not all(map(strip, contents)):
                    raise _Slow
            if cid is None:
                cid = f"line-{line_no}"
            elif first_line(cid, line_no) != line_no:
                raise _Slow
        except _FALLBACK:
            one_line(line_no, raw)
            if run.stopped:
                break
            continue
        if info[1]:
            warn_lines.append(line_no)
            if len(warn_lines) >= FLUSH:
                run._log_warn_lines()
        accepted_ids.append(cid)
        accepted_info.append(info)
        if len(accepted_ids) >= FLUSH:
            run.flush_accepted()
        if batcher is not None:
            batcher.add((line_no, info[2]), contents)
    run._log_warn_lines()
    return line_no


def _role_info(run: Any, classes: tuple, cache: dict[tuple, tuple]) -> tuple:
    """``run._role_info`` of the roles of a sequence of message classes (cached in ``cache``)."""
    info = run._role_info(tuple(map(ROLE_OF.__getitem__, classes)))
    if len(cache) < 10_000:
        cache[classes] = info
    return info
