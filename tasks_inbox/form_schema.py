"""Task forms: the schema a workflow declares, and the Django form built from it.

A form is ``{"fields": [field, ...]}``; a field::

    {"name": "risk", "type": "select", "label": "Risk appetite", "required": true,
     "choices": ["low", "medium", "high"], "help": "..."}

Types: text, textarea, number, select, multiselect, boolean, date. ``min``/``max`` bound a
number's value, a text's length, a multiselect's count, or a date (ISO ``YYYY-MM-DD``).
Choices are plain values or ``{"value", "label"}`` objects. Pure Python, no database.

``form_issues`` checks a declaration. ``task_form`` builds a Django form from it, one field
class per type: each cleans a value (the JSON of the API, or the strings of a page's POST)
and gives the page what it renders, so declaration, cleaning and rendering of a type are in
one place. A field has one message when its value is wrong (``this field is required``,
``must be at most 5``); the API and the pages show the same ones, at ``data.<name>``.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict

from config.issues import Issue, IssueCode

FIELD_TYPES = ("text", "textarea", "number", "select", "multiselect", "boolean", "date")
FIELD_KEYS = {"name", "type", "label", "required", "choices", "min", "max", "help", "default"}
NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
MAX_FIELDS = 100
MAX_TEXT = 20_000
TRUE_WORDS = {"true", "on", "1", "yes"}
FALSE_WORDS = {"false", "off", "0", "no", ""}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def choice_value(choice: Any) -> Any:
    return choice.get("value") if isinstance(choice, dict) else choice


def choice_label(choice: Any) -> str:
    if isinstance(choice, dict):
        return str(choice.get("label") or choice.get("value"))
    return str(choice)


def form_issues(form: Any, path: str = "form") -> list[Issue]:
    """Every problem of a form declaration, each with its JSON path."""
    if form is None or form == {}:
        return []
    if not isinstance(form, dict):
        return [Issue(path, IssueCode.INVALID_VALUE, 'must be an object {"fields": [...]}')]
    issues: list[Issue] = [
        Issue(f"{path}.{k}", IssueCode.UNKNOWN_KEY, f"unknown key '{k}'")
        for k in sorted(set(form) - {"fields"})
    ]
    fields = form.get("fields")
    if not isinstance(fields, list):
        return [
            *issues,
            Issue(f"{path}.fields", IssueCode.INVALID_VALUE, "must be a list of fields"),
        ]
    if len(fields) > MAX_FIELDS:
        issues.append(Issue(f"{path}.fields", IssueCode.TOO_LONG, f"at most {MAX_FIELDS} fields"))
    names: set[str] = set()
    for index, spec in enumerate(fields):
        issues += _field_issues(spec, f"{path}.fields[{index}]", names)
    return issues


def _field_issues(spec: Any, path: str, names: set[str]) -> list[Issue]:
    if not isinstance(spec, dict):
        return [Issue(path, IssueCode.INVALID_VALUE, "a field must be an object")]
    issues: list[Issue] = [
        Issue(f"{path}.{k}", IssueCode.UNKNOWN_KEY, f"unknown key '{k}'")
        for k in sorted(set(spec) - FIELD_KEYS)
    ]
    name = spec.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        issues.append(
            Issue(
                f"{path}.name",
                IssueCode.INVALID_VALUE,
                "must be lowercase letters, digits and '_' (max 64)",
            )
        )
    elif name in names:
        issues.append(Issue(f"{path}.name", IssueCode.DUPLICATE, f"duplicate field '{name}'"))
    else:
        names.add(name)
    kind = spec.get("type")
    if kind not in FIELD_TYPES:
        issues.append(
            Issue(
                f"{path}.type",
                IssueCode.INVALID_VALUE,
                f"unknown field type {kind!r} (known: {', '.join(FIELD_TYPES)})",
            )
        )
        return issues
    for key in ("label", "help"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            issues.append(Issue(f"{path}.{key}", IssueCode.INVALID_VALUE, "must be a string"))
    if spec.get("required") is not None and not isinstance(spec["required"], bool):
        issues.append(Issue(f"{path}.required", IssueCode.INVALID_VALUE, "must be true or false"))
    choices = spec.get("choices")
    if kind in ("select", "multiselect"):
        if not isinstance(choices, list) or not choices:
            issues.append(
                Issue(
                    f"{path}.choices",
                    IssueCode.REQUIRED,
                    f"a {kind} field needs a non-empty list of choices",
                )
            )
        else:
            seen: set[str] = set()
            for i, choice in enumerate(choices):
                value = choice_value(choice)
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    issues.append(
                        Issue(
                            f"{path}.choices[{i}]",
                            IssueCode.INVALID_VALUE,
                            'must be a string, a number or {"value", "label"}',
                        )
                    )
                elif str(value) in seen:
                    issues.append(
                        Issue(
                            f"{path}.choices[{i}]",
                            IssueCode.DUPLICATE,
                            f"duplicate choice {value!r}",
                        )
                    )
                else:
                    seen.add(str(value))
    elif choices is not None:
        issues.append(
            Issue(f"{path}.choices", IssueCode.INVALID_VALUE, f"a {kind} field has no choices")
        )
    issues += _bounds_issues(spec, kind, path)
    return issues


def _bounds_issues(spec: dict[str, Any], kind: str, path: str) -> list[Issue]:
    issues: list[Issue] = []
    bounds = {key: spec.get(key) for key in ("min", "max") if spec.get(key) is not None}
    if not bounds:
        return issues
    if kind == "boolean" or kind == "select":
        return [
            Issue(f"{path}.{key}", IssueCode.INVALID_VALUE, f"a {kind} field has no {key}")
            for key in bounds
        ]
    for key, value in bounds.items():
        if kind == "date":
            if not isinstance(value, str) or _parse_date(value) is None:
                issues.append(
                    Issue(
                        f"{path}.{key}", IssueCode.INVALID_VALUE, "must be an ISO date (YYYY-MM-DD)"
                    )
                )
        elif kind == "number":
            if not _is_number(value):
                issues.append(Issue(f"{path}.{key}", IssueCode.INVALID_VALUE, "must be a number"))
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            issues.append(
                Issue(f"{path}.{key}", IssueCode.INVALID_VALUE, "must be a non-negative integer")
            )
    if not issues and "min" in bounds and "max" in bounds:
        low, high = bounds["min"], bounds["max"]
        if kind == "date":
            low, high = _parse_date(str(low)), _parse_date(str(high))
        if low is not None and high is not None and low > high:
            issues.append(
                Issue(f"{path}.min", IssueCode.INVALID_VALUE, "must not be greater than max")
            )
    return issues


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        return None


def _number(value: Any) -> int | float | None:
    if _is_number(value):
        return value
    if isinstance(value, str) and value.strip():
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        if not number.is_finite():
            return None
        return int(number) if number == number.to_integral_value() else float(number)
    return None


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _wrong(message: str, code: str = "invalid") -> ValidationError:
    return ValidationError(message, code=code)


# --- the fields -------------------------------------------------------------------------


class SubmittedValue(forms.Widget):
    """Reads a field's value as submitted: as it is from a JSON object, the string (or
    strings, or checkbox) of a page's POST."""

    many = False
    checkbox = False

    def value_from_datadict(self, data: Any, files: Any, name: str) -> Any:
        if not isinstance(data, QueryDict):
            return data.get(name)
        if self.many:
            return data.getlist(name)
        if self.checkbox:
            return data.get(name) in ("on", "true", "1")
        return data.get(name)


class SpecField(forms.Field):
    """A field of a task form, built from its declaration (``spec``).

    ``clean`` returns the cleaned value or raises one ``ValidationError`` with a code;
    ``render`` returns what the task page shows for a value and its errors.
    """

    kind: ClassVar[str] = "text"
    has_bounds: ClassVar[bool] = False  # min/max shown on the page's input

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.is_required = bool(spec.get("required"))
        self.low, self.high = spec.get("min"), spec.get("max")
        name = spec["name"]
        super().__init__(
            required=False,
            widget=SubmittedValue(),
            label=spec.get("label") or name.replace("_", " ").capitalize(),
            help_text=spec.get("help") or "",
            initial=spec.get("default"),
        )

    def clean(self, value: Any) -> Any:
        if _empty(value):
            if self.is_required:
                raise _wrong("this field is required", "required")
            return None
        return self.clean_given(value)

    def clean_given(self, value: Any) -> Any:
        raise NotImplementedError

    def render(self, value: Any, errors: list[str]) -> dict[str, Any]:
        if value is None:
            value = self.initial
        return {
            **self.spec,
            "label": self.label,
            "min": self.low if self.has_bounds else None,
            "max": self.high if self.has_bounds else None,
            "help": self.help_text,
            "value": "" if value is None else value,
            "errors": errors,
            "options": self.options(value),
        }

    def options(self, value: Any) -> list[dict[str, Any]]:
        picked = {str(v) for v in value} if isinstance(value, list) else {str(value)}
        return [
            {
                "value": choice_value(c),
                "label": choice_label(c),
                "selected": str(choice_value(c)) in picked,
            }
            for c in self.spec.get("choices") or []
        ]


class TextField(SpecField):
    kind = "text"

    def clean_given(self, value: Any) -> str:
        if isinstance(value, dict | list | bool):
            raise _wrong("must be text")
        text = str(value).strip()
        if len(text) > MAX_TEXT:
            raise _wrong(f"at most {MAX_TEXT} characters", "max_length")
        if self.low is not None and len(text) < self.low:
            raise _wrong(f"at least {self.low} characters", "min_length")
        if self.high is not None and len(text) > self.high:
            raise _wrong(f"at most {self.high} characters", "max_length")
        return text


class TextareaField(TextField):
    kind = "textarea"


class NumberField(SpecField):
    kind = "number"
    has_bounds = True

    def clean_given(self, value: Any) -> int | float:
        number = _number(value)
        if number is None:
            raise _wrong("must be a number")
        if self.low is not None and number < self.low:
            raise _wrong(f"must be at least {self.low}", "min_value")
        if self.high is not None and number > self.high:
            raise _wrong(f"must be at most {self.high}", "max_value")
        return number


class DateField(SpecField):
    kind = "date"
    has_bounds = True

    def clean_given(self, value: Any) -> str:
        moment = _parse_date(value) if isinstance(value, str) else None
        if moment is None:
            raise _wrong("must be a date (YYYY-MM-DD)")
        if self.low is not None and moment < date.fromisoformat(self.low):
            raise _wrong(f"must be on or after {self.low}", "min_value")
        if self.high is not None and moment > date.fromisoformat(self.high):
            raise _wrong(f"must be on or before {self.high}", "max_value")
        return moment.isoformat()


class SelectField(SpecField):
    kind = "select"

    def clean_given(self, value: Any) -> Any:
        if not isinstance(value, dict | list | bool):
            for choice in self.spec.get("choices") or []:
                if str(choice_value(choice)) == str(value):
                    return choice_value(choice)
        raise _wrong(f"{value!r} is not one of the choices", "invalid_choice")


class MultiselectField(SpecField):
    kind = "multiselect"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.widget.many = True

    def clean(self, value: Any) -> list[Any]:
        if value is None or value == "":
            value = []
        if not isinstance(value, list):
            value = [value]
        allowed = {str(choice_value(c)): choice_value(c) for c in self.spec.get("choices") or []}
        picked: list[Any] = []
        for item in value:
            if isinstance(item, dict | list) or str(item) not in allowed:
                raise _wrong(f"{item!r} is not one of the choices", "invalid_choice")
            if allowed[str(item)] not in picked:
                picked.append(allowed[str(item)])
        if self.is_required and not picked:
            raise _wrong("this field is required", "required")
        if self.low is not None and picked and len(picked) < self.low:
            raise _wrong(f"choose at least {self.low}", "min_length")
        if self.high is not None and len(picked) > self.high:
            raise _wrong(f"choose at most {self.high}", "max_length")
        return picked


class BooleanField(SpecField):
    kind = "boolean"

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.widget.checkbox = True

    def clean(self, value: Any) -> bool:
        if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
            value = value.strip().lower() in TRUE_WORDS
        if value is None:
            value = False
        if not isinstance(value, bool):
            raise _wrong("must be true or false")
        if self.is_required and not value:
            raise _wrong("must be checked", "required")
        return value


FIELD_CLASSES: dict[str, type[SpecField]] = {
    cls.kind: cls
    for cls in (
        TextField,
        TextareaField,
        NumberField,
        SelectField,
        MultiselectField,
        BooleanField,
        DateField,
    )
}
assert set(FIELD_CLASSES) == set(FIELD_TYPES)


# --- the form ---------------------------------------------------------------------------


class TaskForm(forms.Form):
    """The form of a task, its fields built from a valid declaration (``form_issues``)."""

    def __init__(self, declaration: dict[str, Any] | None, data: Any = None) -> None:
        super().__init__(data=data)
        specs = declaration.get("fields") if isinstance(declaration, dict) else None
        for spec in specs or []:
            self.fields[spec["name"]] = FIELD_CLASSES[spec["type"]](spec)

    def submitted(self) -> dict[str, Any]:
        """The values as submitted, by field name (a page's POST read as its widgets do)."""
        return {
            name: field.widget.value_from_datadict(self.data, self.files, name)
            for name, field in self.fields.items()
        }

    def errors_at(self, path: str) -> dict[str, list[str]]:
        """The field errors by JSON path (``data.<name>``), in field order."""
        return {
            f"{path}.{name}": [str(message) for message in messages]
            for name, messages in self.errors.items()
        }

    def rendered(
        self, values: dict[str, Any], errors: dict[str, list[str]], path: str = "data"
    ) -> list[dict[str, Any]]:
        """What the task page shows for each field: ``values`` (the submitted ones, or the
        result) and ``errors`` by JSON path."""
        return [
            field.render(values.get(name), errors.get(f"{path}.{name}", []))
            for name, field in self.fields.items()
            if isinstance(field, SpecField)
        ]


def task_form(declaration: dict[str, Any] | None, data: Any = None) -> TaskForm:
    return TaskForm(declaration, data=data)


def form_clean(
    form: dict[str, Any] | None, data: Any, path: str = "data"
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Check submitted ``data`` against the form: ``(cleaned, errors by JSON path)``.

    Every field appears in ``cleaned`` (``None``, ``[]`` or ``False`` when not given); the
    errors name the keys that are not fields first, then each wrong field in form order.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return {}, {path: ["must be an object of field values"]}
    bound = task_form(form, data=data)
    errors = {
        f"{path}.{key}": ["not a field of this form"]
        for key in sorted(set(data) - set(bound.fields))
    }
    if not bound.is_valid():
        errors.update(bound.errors_at(path))
    return bound.cleaned_data, errors
