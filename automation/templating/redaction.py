"""Masking secret values, in every form they can take, in logs and run records."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import quote, quote_plus

from automation.templating.base import (
    _URI_SAFE,
    DEFAULT_MASK,
    MAX_VALUE_DEPTH,
)

if TYPE_CHECKING:
    pass


def secret_forms(value: str) -> set[str]:
    """The spellings a secret's value can take once it has passed through a URL, JSON, a
    ``repr()`` or a log line: as is, URL-encoded (``quote`` and ``quote_plus``, and as an
    HTTP client requotes a URL, leaving RFC 3986 delimiters alone), and each of
    those JSON-, repr- and backslash-escaped (once and twice). Matching is
    case-insensitive (see :func:`secret_pattern`), which also covers both cases of
    percent-encoded hex digits and a value lowercased in a host name."""
    if not value:
        return set()
    encoded = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        quote_plus(value, safe="/"),
        quote(value, safe=_URI_SAFE),
        quote(value, safe=_URI_SAFE + "%"),
    }
    if "://" in value:  # a whole URL: also as logs show one, without query and fragment
        encoded.add(value.split("#")[0].split("?")[0])
    forms = set(encoded)
    for base in encoded:
        once = {
            json.dumps(base)[1:-1],
            json.dumps(base, ensure_ascii=False)[1:-1],
            repr(base)[1:-1],
            ascii(base)[1:-1],
            base.replace("\\", "\\\\"),
            html.escape(base, quote=True),
            html.escape(base, quote=True).replace("&#x27;", "&#39;"),
        }
        forms |= once
        for item in once:
            forms |= {json.dumps(item)[1:-1], repr(item)[1:-1], item.replace("\\", "\\\\")}
    return {form for form in forms if form}


# A base64 form shorter than this is not masked (it would match ordinary words).
MIN_BASE64_FORM = 6
_URLSAFE = str.maketrans("+/", "-_")


def secret_base64_forms(value: str) -> set[str]:
    """The base64 spellings of a secret's value (standard and URL-safe alphabets, with
    and without padding), wherever it sits in the encoded text: alone, or as one half of
    a ``user:secret`` pair as an ``Authorization: Basic`` header carries it.

    Inside a longer encoded text the value's bytes start at one of three offsets modulo 3;
    for each, the form is the run of base64 characters that depend on the value's bytes
    only (the characters at either edge also carry bits of the neighbours, and are left
    alone), and, for a value that ends the text, that run through the end and padding.
    These forms are matched case-sensitively (base64 is)."""
    data = value.encode("utf-8")
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        start = -(-offset * 8 // 6)  # the first character with no filler bit
        end = (offset + len(data)) * 8 // 6  # past the last character with no later bit
        for form in (encoded[start:end], encoded[start:], encoded[start:].rstrip("=")):
            forms |= {form, form.translate(_URLSAFE)}
    return {form for form in forms if len(form.rstrip("=")) >= MIN_BASE64_FORM}


@lru_cache(maxsize=256)
def _secret_pattern(values: frozenset[str]) -> re.Pattern[str] | None:
    needles = {re.escape(form): len(form) for value in values for form in secret_forms(value)}
    for value in values:
        for form in secret_base64_forms(value):
            needles.setdefault(f"(?-i:{re.escape(form)})", len(form))
    if not needles:
        return None
    ordered = sorted(needles, key=lambda needle: needles[needle], reverse=True)
    return re.compile("|".join(ordered), re.IGNORECASE)


def secret_pattern(secret_values: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching every form (:func:`secret_forms`, in any case, and
    :func:`secret_base64_forms`, as they are) of every non-empty value, longest first;
    None when there is nothing to mask."""
    return _secret_pattern(frozenset(s for s in secret_values if isinstance(s, str) and s))


@overload
def redact(obj: str, secret_values: Iterable[str], mask: str = DEFAULT_MASK) -> str: ...
@overload
def redact(
    obj: dict[str, Any], secret_values: Iterable[str], mask: str = DEFAULT_MASK
) -> dict[str, Any]: ...
@overload
def redact(obj: object, secret_values: Iterable[str], mask: str = DEFAULT_MASK) -> object: ...
def redact(obj: object, secret_values: Iterable[str], mask: str = DEFAULT_MASK) -> object:
    """Deep-copy JSON-like ``obj`` with every form of each secret replaced by ``mask``.

    Strings (dict keys included) are scrubbed of each value in every form it can take
    (:func:`secret_forms`, case-insensitively); empty secrets are ignored; other scalars
    are kept. Anything nested deeper than the value limit is replaced by ``mask``, so
    redaction fails closed and terminates on cyclic data.
    """
    pattern = secret_pattern(secret_values)

    def scrub(item: object, depth: int) -> object:
        if isinstance(item, str):
            return pattern.sub(lambda _match: mask, item) if pattern else item
        if isinstance(item, dict | list | tuple) and depth >= MAX_VALUE_DEPTH:
            return mask
        if isinstance(item, dict):
            return {scrub(key, depth + 1): scrub(child, depth + 1) for key, child in item.items()}
        if isinstance(item, tuple):
            return tuple(scrub(child, depth + 1) for child in item)
        if isinstance(item, list):
            return [scrub(child, depth + 1) for child in item]
        return item

    return scrub(obj, 0)
