"""Stringifying, copying and sizing rendered values, and the filters."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode
from uuid import UUID

from automation.paths import MISSING
from automation.templating.base import (
    _FLOAT_TEXT,
    _INT_TEXT,
    _SAFE_SCALARS,
    MAX_VALUE_DEPTH,
    TemplateCode,
    TemplateError,
    TemplateRenderError,
)

if TYPE_CHECKING:
    pass


def _unsupported(value: object) -> TemplateRenderError:
    return TemplateRenderError(
        f"cannot render a value of type '{type(value).__name__}'",
        code=TemplateCode.UNSUPPORTED_VALUE,
    )


def _copy_data(value: object, *, for_json: bool = False, depth: int = 0) -> object:
    """Copy plain data; with ``for_json`` turn Decimal, dates and UUIDs into strings."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, _SAFE_SCALARS):
        return _to_text(value) if for_json else value
    if depth >= MAX_VALUE_DEPTH:
        raise TemplateRenderError(
            f"value is nested deeper than {MAX_VALUE_DEPTH} levels",
            code=TemplateCode.VALUE_TOO_DEEP,
        )
    if isinstance(value, dict):
        copied = {}
        for key, item in value.items():
            if key is not None and not isinstance(key, bool | int | float | str):
                raise _unsupported(key)
            copied[key] = _copy_data(item, for_json=for_json, depth=depth + 1)
        return copied
    if isinstance(value, list | tuple):
        return [_copy_data(item, for_json=for_json, depth=depth + 1) for item in value]
    raise _unsupported(value)


def _data_size(value: object, limit: int) -> int:
    """The length of ``value``'s compact JSON form, about (strings counted unescaped);
    raises ``value_too_large`` as soon as it passes ``limit``, without copying anything."""
    size = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, dict):
            if depth >= MAX_VALUE_DEPTH:
                raise TemplateRenderError(
                    f"value is nested deeper than {MAX_VALUE_DEPTH} levels",
                    code=TemplateCode.VALUE_TOO_DEEP,
                )
            size += 2 + len(item)
            for key, child in item.items():
                size += (len(key) if isinstance(key, str) else 8) + 3
                pending.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= MAX_VALUE_DEPTH:
                raise TemplateRenderError(
                    f"value is nested deeper than {MAX_VALUE_DEPTH} levels",
                    code=TemplateCode.VALUE_TOO_DEEP,
                )
            size += 2 + len(item)
            pending.extend((child, depth + 1) for child in item)
        elif item is None or isinstance(item, (bool, float, *_SAFE_SCALARS)):
            size += len(_to_text(item)) if not isinstance(item, float) else 24
        if size > limit:
            raise TemplateRenderError(
                f"the value is larger than {limit} characters (as JSON)",
                code=TemplateCode.VALUE_TOO_LARGE,
                params={"limit": limit},
            )
    return size


def _to_json(value: object) -> str:
    try:
        return json.dumps(
            _copy_data(value, for_json=True),
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except ValueError as exc:
        if isinstance(exc, TemplateError):
            raise
        message = "value cannot be written as JSON"
        raise TemplateRenderError(message, code=TemplateCode.UNSUPPORTED_VALUE) from exc


def _to_text(value: object) -> str:
    """Stringify a value: None -> "", bools -> true/false, containers -> compact JSON."""
    if value is None or value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError as exc:
            message = "number too large to render"
            raise TemplateRenderError(message, code=TemplateCode.UNSUPPORTED_VALUE) from exc
    if isinstance(value, float | Decimal | UUID):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        return _to_json(value)
    raise _unsupported(value)


# --- filters -------------------------------------------------------------------------


def _filter_failed(name: str, expected: str) -> TemplateRenderError:
    return TemplateRenderError(
        f"filter '{name}' expects {expected}",
        code=TemplateCode.FILTER_ERROR,
        params={"filter": name},
    )


def _filter_default(value: object, arg: object) -> object:
    return arg if value is None or (isinstance(value, str) and not value) else value


def _filter_date(value: object, fmt: object) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    moment: date
    if isinstance(value, date):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = date.fromisoformat(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise _filter_failed("date", "an ISO date or datetime") from None
    else:
        raise _filter_failed("date", "an ISO date or datetime")
    try:
        return moment.strftime(str(fmt))
    except (ValueError, OverflowError):
        raise _filter_failed("date", "a date it can format") from None


def _filter_int(value: object, _arg: object) -> int:
    if isinstance(value, int):
        return int(value)
    try:
        if isinstance(value, float | Decimal):
            return int(value)
        if isinstance(value, str) and (match := _INT_TEXT.fullmatch(value)):
            return int(match.group(1))
    except (ValueError, OverflowError, ArithmeticError):
        pass
    raise _filter_failed("int", "a number")


def _filter_float(value: object, _arg: object) -> float:
    number = None
    try:
        if isinstance(value, int | float | Decimal) or (
            isinstance(value, str) and _FLOAT_TEXT.fullmatch(value)
        ):
            number = float(value)
    except (ValueError, OverflowError):
        number = None
    if number is None or not math.isfinite(number):
        raise _filter_failed("float", "a finite number")
    return number


def _filter_length(value: object, _arg: object) -> int:
    if value is None:
        return 0
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise _filter_failed("length", "a string, list or object")


def _filter_join(value: object, separator: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return (", " if separator is None else str(separator)).join(
            _to_text(item) for item in value
        )
    raise _filter_failed("join", "a list")


def _filter_truncate(value: object, count: object) -> str:
    """The text's first ``count`` characters (the parser makes ``count`` an integer)."""
    return _to_text(value)[: count if isinstance(count, int) else None]


def _filter_urlencode(value: object, _arg: object) -> str:
    try:
        if isinstance(value, dict):
            pairs = [(_to_text(key), _to_text(item)) for key, item in value.items()]
            return urlencode(pairs, quote_via=quote)
        return quote(_to_text(value), safe="")
    except UnicodeEncodeError:
        raise _filter_failed("urlencode", "text that can be encoded as UTF-8") from None


def _sum_term(item: object) -> Decimal | None:
    if item is None:
        return None
    if isinstance(item, bool):
        raise _filter_failed("sum", "numbers (not true/false)")
    if isinstance(item, int):
        return Decimal(int(item))
    if isinstance(item, float):
        if not math.isfinite(item):
            raise _filter_failed("sum", "finite numbers")
        return Decimal(repr(float(item)))
    if isinstance(item, Decimal):
        if not item.is_finite():
            raise _filter_failed("sum", "finite numbers")
        return item
    if isinstance(item, str) and _FLOAT_TEXT.fullmatch(item):
        return _sum_term(float(item)) if ("e" in item or "E" in item) else Decimal(item.strip())
    raise _filter_failed("sum", "a list of numbers or an object whose values are numbers")


def _filter_sum(value: object, _arg: object) -> int | float:
    """Sum a list of numbers, or an object's values; missing (null) items count as 0.

    Decimal arithmetic, so 33.3 + 33.3 + 33.4 is exactly 100; a whole result is an int.
    Numeric strings count as numbers; anything else is a filter error.
    """
    if value is None:
        return 0
    if isinstance(value, dict):
        items = list(dict.values(value))
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _filter_failed("sum", "a list of numbers or an object whose values are numbers")
    if len(items) > 100_000:
        raise _filter_failed("sum", "at most 100000 items")
    total = Decimal(0)
    for item in items:
        term = _sum_term(item)
        if term is not None:
            total += term
    if total == total.to_integral_value():
        return int(total)
    return float(total)


_FILTER_FUNCTIONS: Final[dict[str, Callable[[object, object], object]]] = {
    "upper": lambda value, _arg: _to_text(value).upper(),
    "lower": lambda value, _arg: _to_text(value).lower(),
    "title": lambda value, _arg: _to_text(value).title(),
    "trim": lambda value, _arg: _to_text(value).strip(),
    "default": _filter_default,
    "date": _filter_date,
    "int": _filter_int,
    "float": _filter_float,
    "str": lambda value, _arg: _to_text(value),
    "json": lambda value, _arg: _to_json(value),
    "length": _filter_length,
    "join": _filter_join,
    "truncate": _filter_truncate,
    "urlencode": _filter_urlencode,
    "sum": _filter_sum,
}


# --- rendering -----------------------------------------------------------------------
