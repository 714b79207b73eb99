"""Tests for the workflow template grammar (pure Python, no database)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automation.templating import (
    BUILTIN_ROOTS,
    FILTERS,
    Clock,
    Limits,
    RenderResult,
    TemplateError,
    TemplateRenderError,
    TemplateSyntaxError,
    redact,
    render_string,
    render_value,
    system_clock,
    template_roots,
    validate_template,
    validate_value,
)
from config.issues import Issue

_ROOT = Path(__file__).resolve().parent.parent

CLOCK = Clock(
    today=date(2024, 3, 15),
    now=datetime(2024, 3, 15, 9, 30, tzinfo=timezone(timedelta(hours=1))),
)

CONTEXT = {
    "lead": {
        "id": 42,
        "email": "ada@example.com",
        "company_name": "Analytical Engines",
        "annual_revenue": 1250000.5,
        "is_hot": True,
        "notes": None,
        "owner": {"email": "owner@example.com", "name": "grace hopper"},
        "tags": ["b2b", "enterprise"],
        "_internal": "hidden",
    },
    "steps": {"review": {"result": {"amount": 1500, "approved": True}}},
    "items": [{"name": "first"}, {"name": "second"}],
    "event": {"created_at": "2024-03-01T08:05:00+00:00", "day": "2024-02-29"},
    "text": {"padded": "  spaced out  ", "html": "<script>alert('x')</script> & \"q\""},
    "secrets": {"CRM_API_KEY": "from-context-never-used"},
}

SECRETS = {"CRM_API_KEY": "sk-live-123", "WEBHOOK_TOKEN": "tok<&>"}


def render(text: str, **kwargs: object) -> object:
    """Render one value against the shared context with the fixed clock."""
    kwargs.setdefault("clock", CLOCK)
    return render_value(text, CONTEXT, **kwargs).value


def codes(text: str, **kwargs: object) -> list[str]:
    return [issue.code for issue in validate_template(text, **kwargs)]


# --- paths ---------------------------------------------------------------------------


def test_simple_path_in_text() -> None:
    assert render("Hi {{lead.email}}!") == "Hi ada@example.com!"


def test_whitespace_inside_braces_is_optional() -> None:
    assert render("{{ lead.email }}|{{lead.email}}|{{   lead.email\t}}") == (
        "ada@example.com|ada@example.com|ada@example.com"
    )


def test_nested_paths() -> None:
    assert render("{{ lead.owner.email }}") == "owner@example.com"
    assert render("{{ steps.review.result.amount }}") == 1500


def test_list_index() -> None:
    assert render("{{ items.0.name }} then {{ items.1.name }}") == "first then second"
    assert render("{{ lead.tags.1 }}") == "enterprise"


def test_missing_path_is_empty_in_text_and_none_alone() -> None:
    assert render("[{{ lead.nope }}][{{ items.9.name }}][{{ nothing.at.all }}]") == "[][][]"
    assert render("{{ lead.nope }}") is None
    assert render("{{ lead.email.deeper }}") is None
    assert render("{{ items.5 }}") is None


def test_index_into_non_list_is_missing() -> None:
    assert render("{{ lead.email.0 }}") is None
    assert render("{{ lead.0 }}") is None


def test_numeric_key_on_dict_is_looked_up_as_string() -> None:
    result = render_value("{{ data.2024 }}", {"data": {"2024": "leap"}})
    assert result.value == "leap"


# --- typed single expressions --------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ lead.id }}", 42),
        ("{{ lead.annual_revenue }}", 1250000.5),
        ("{{ lead.is_hot }}", True),
        ("{{ lead.notes }}", None),
        ("{{ lead.owner }}", {"email": "owner@example.com", "name": "grace hopper"}),
        ("{{ lead.tags }}", ["b2b", "enterprise"]),
        ("  {{ lead.id }}\n", 42),
    ],
)
def test_single_expression_keeps_type(template: str, expected: object) -> None:
    value = render(template)
    assert value == expected
    assert type(value) is type(expected)


def test_single_expression_returns_a_copy_of_context_data() -> None:
    value = render("{{ lead.tags }}")
    value.append("mutated")
    assert CONTEXT["lead"]["tags"] == ["b2b", "enterprise"]


def test_mixed_strings_stringify_values() -> None:
    template = "{{lead.id}} {{lead.annual_revenue}} {{lead.is_hot}} [{{lead.notes}}] {{lead.tags}}"
    assert render(template) == '42 1250000.5 true [] ["b2b","enterprise"]'
    assert render("x{{ lead.owner }}") == 'x{"email":"owner@example.com","name":"grace hopper"}'
    assert render("{{ steps.review.result.approved }}!") == "true!"


def test_decimal_and_dates_are_stringified() -> None:
    context = {"amount": Decimal("12.50"), "day": date(2024, 1, 2)}
    assert render_string("{{ amount }} on {{ day }}", context).value == "12.50 on 2024-01-02"
    assert render_value("{{ amount }}", context).value == Decimal("12.50")


def test_render_string_always_returns_text() -> None:
    assert render_string("{{ lead.id }}", CONTEXT).value == "42"
    assert render_string("{{ lead.notes }}", CONTEXT).value == ""


def test_render_value_walks_dicts_and_lists_but_not_keys() -> None:
    config = {
        "{{ lead.id }}": "{{ lead.id }}",
        "nested": {"list": ["{{ items.0.name }}", 7, None, True, {"x": "{{ lead.tags.0 }}"}]},
    }
    assert render_value(config, CONTEXT).value == {
        "{{ lead.id }}": 42,
        "nested": {"list": ["first", 7, None, True, {"x": "b2b"}]},
    }


def test_text_without_placeholders_is_unchanged() -> None:
    assert render("}} plain { text } }}") == "}} plain { text } }}"


# --- date tokens ---------------------------------------------------------------------


def test_today_tokens() -> None:
    assert render("{{today}}") == "2024-03-15"
    assert render("{{ today+2 }}") == "2024-03-17"
    assert render("{{today-30}}") == "2024-02-14"
    assert render("{{ today + 20 }}") == "2024-04-04"
    assert render("due {{today+2}}") == "due 2024-03-17"


def test_now_token_is_iso_with_offset() -> None:
    assert render("{{ now }}") == "2024-03-15T09:30:00+01:00"


def test_clock_is_only_read_when_a_date_token_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode() -> Clock:
        raise AssertionError("clock read")

    monkeypatch.setattr("automation.templating.system_clock", explode)
    assert render_value("{{ lead.id }}", CONTEXT).value == 42


def test_default_clock_comes_from_django(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.utils import timezone as django_timezone

    moment = datetime(2024, 6, 30, 23, 30, tzinfo=UTC)
    monkeypatch.setattr(django_timezone, "now", lambda: moment)
    monkeypatch.setattr(django_timezone, "localdate", lambda value=None: date(2024, 7, 1))
    assert system_clock() == Clock(today=date(2024, 7, 1), now=moment)
    assert render_value("{{ today }} {{ now }}", {}).value == (
        "2024-07-01 2024-06-30T23:30:00+00:00"
    )


def test_module_imports_without_django() -> None:
    code = "import sys, automation.templating; assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_ROOT))


def test_date_out_of_range() -> None:
    clock = Clock(today=date(9999, 12, 30), now=CLOCK.now)
    with pytest.raises(TemplateRenderError) as info:
        render("{{ today+5 }}", clock=clock)
    assert info.value.code == "DATE_OUT_OF_RANGE"


# --- filters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ lead.company_name | upper }}", "ANALYTICAL ENGINES"),
        ("{{ lead.company_name | lower }}", "analytical engines"),
        ("{{ lead.owner.name | title }}", "Grace Hopper"),
        ("[{{ text.padded | trim }}]", "[spaced out]"),
        ('{{ lead.notes | default:"n/a" }}', "n/a"),
        ('{{ lead.missing | default:"n/a" }}', "n/a"),
        ('{{ lead.email | default:"n/a" }}', "ada@example.com"),
        ("{{ lead.missing | default:0 }}", 0),
        ('{{ event.created_at | date:"%d/%m/%Y %H:%M" }}', "01/03/2024 08:05"),
        ('{{ event.day | date:"%A %-d %B" }}', "Thursday 29 February"),
        ('{{ today | date:"%Y" }}', "2024"),
        ('{{ lead.missing | date:"%Y" }}', ""),
        ("{{ lead.annual_revenue | int }}", 1250000),
        ("{{ lead.id | str | int }}", 42),
        ('{{ lead.missing | default:" 12.9 " | int }}', 12),
        ("{{ lead.id | float }}", 42.0),
        ('{{ lead.missing | default:"1e3" | float }}', 1000.0),
        ("{{ lead.id | str }}", "42"),
        ("{{ lead.is_hot | str }}", "true"),
        ("{{ lead.tags | json }}", '["b2b","enterprise"]'),
        ("{{ lead.company_name | json }}", '"Analytical Engines"'),
        ("{{ lead.notes | json }}", "null"),
        ("{{ lead.tags | length }}", 2),
        ("{{ lead.email | length }}", 15),
        ("{{ lead.missing | length }}", 0),
        ("{{ lead.owner | length }}", 2),
        ('{{ lead.tags | join:", " }}', "b2b, enterprise"),
        ('{{ lead.tags | join:"|" }}', "b2b|enterprise"),
        ("{{ lead.tags | join }}", "b2b, enterprise"),
        ("{{ lead.company_name | truncate:10 }}", "Analytical"),
        ("{{ lead.company_name | truncate:0 }}", ""),
        ("{{ lead.company_name | urlencode }}", "Analytical%20Engines"),
        ("{{ lead.email | urlencode }}", "ada%40example.com"),
        ('{{ lead.missing | default:"a \\"b\\"" }}', 'a "b"'),
        ('{{ lead.missing | default:"x" | upper | truncate:1 }}', "X"),
    ],
)
def test_filters(template: str, expected: object) -> None:
    assert render(template) == expected


def test_filter_set_is_closed() -> None:
    expected = {
        "upper", "lower", "title", "trim", "default", "date", "int", "float", "str",
        "json", "length", "join", "truncate", "urlencode", "sum",
    }  # fmt: skip
    assert expected == FILTERS


def test_urlencode_dict_builds_a_query_string() -> None:
    value = render_value("{{ q | urlencode }}", {"q": {"name": "a b", "n": 2}}).value
    assert value == "name=a%20b&n=2"


def test_filter_argument_may_contain_a_bar() -> None:
    assert render('{{ lead.tags | join:" | " }}') == "b2b | enterprise"


@pytest.mark.parametrize(
    "template",
    [
        "{{ lead.company_name | int }}",
        "{{ lead.missing | int }}",
        "{{ lead.tags | float }}",
        '{{ lead.missing | default:"inf" | float }}',
        '{{ lead.email | date:"%Y" }}',
        '{{ lead.id | date:"%Y" }}',
        "{{ lead.id | length }}",
        "{{ lead.owner | join }}",
    ],
)
def test_filter_failures_raise_filter_error(template: str) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render(template)
    assert info.value.code == "FILTER_ERROR"


# --- modes and escaping --------------------------------------------------------------


def test_html_mode_escapes_values_but_not_literal_markup() -> None:
    value = render('<p class="x">{{ text.html }}</p>', mode="html")
    assert value == (
        '<p class="x">&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;</p>'
    )


def test_html_mode_single_expression_is_an_escaped_string() -> None:
    assert render("{{ text.html }}", mode="html").startswith("&lt;script&gt;")
    assert render("{{ lead.id }}", mode="html") == "42"


def test_header_mode_refuses_line_breaks() -> None:
    context = {"subject": "Hello\r\nBcc: victim@example.com", "name": "Ada"}
    with pytest.raises(TemplateRenderError) as info:
        render_value("Re: {{ subject }}", context, mode="header")
    assert info.value.code == "HEADER_INJECTION"
    with pytest.raises(TemplateRenderError):
        render_value("{{ subject }}", context, mode="header")
    with pytest.raises(TemplateRenderError):
        render_value("line\nbreak", context, mode="header")
    assert render_value("Hi {{ name }}", context, mode="header").value == "Hi Ada"


def test_modes_per_top_level_key() -> None:
    config = {
        "subject": "New lead {{ text.html }}",
        "html_body": "<b>{{ text.html }}</b>",
        "text_body": "{{ text.html }}",
        "to": ["{{ lead.email }}"],
    }
    modes = {"subject": "header", "html_body": "html", "to": "header"}
    value = render_value(config, CONTEXT, modes=modes).value
    assert value["html_body"].startswith("<b>&lt;script&gt;")
    assert value["text_body"] == CONTEXT["text"]["html"]
    assert value["to"] == ["ada@example.com"]

    bad = {"subject": "{{ x }}", "body": "{{ x }}"}
    assert render_value({"body": "{{ x }}"}, {"x": "a\nb"}, modes={"subject": "header"}).value
    with pytest.raises(TemplateRenderError) as info:
        render_value(bad, {"x": "a\nb"}, modes={"subject": "header"})
    assert info.value.code == "HEADER_INJECTION"
    assert info.value.params["path"] == "config.subject"


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown template mode"):
        render_value("x", {}, mode="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown template mode"):
        render_value({"a": "x"}, {}, modes={"a": "xml"})  # type: ignore[dict-item]


# --- secrets -------------------------------------------------------------------------


def test_secrets_are_resolved_and_recorded() -> None:
    config = {"headers": {"Authorization": "Bearer {{ secrets.CRM_API_KEY }}"}, "n": 1}
    result = render_value(config, CONTEXT, secrets=SECRETS.__getitem__)
    assert isinstance(result, RenderResult)
    assert result.value["headers"]["Authorization"] == "Bearer sk-live-123"
    assert result.secrets_used == {"sk-live-123"}
    redacted = redact(result.value, result.secrets_used)
    assert redacted == {"headers": {"Authorization": "Bearer ********"}, "n": 1}
    assert result.value["headers"]["Authorization"] == "Bearer sk-live-123"


def test_secret_root_never_reads_the_context() -> None:
    result = render_value("{{ secrets.CRM_API_KEY }}", CONTEXT, secrets=SECRETS.get)
    assert result.value == "sk-live-123"


def test_transformed_secret_forms_are_recorded_too() -> None:
    result = render_value(
        "<i>{{ secrets.WEBHOOK_TOKEN }}</i> {{ secrets.WEBHOOK_TOKEN | urlencode }}",
        {},
        secrets=SECRETS.__getitem__,
        mode="html",
    )
    assert result.value == "<i>tok&lt;&amp;&gt;</i> tok%3C%26%3E"
    assert result.secrets_used == {"tok<&>", "tok&lt;&amp;&gt;", "tok%3C%26%3E"}
    assert redact(result.value, result.secrets_used, mask="***") == "<i>***</i> ***"


def test_unknown_secret() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ secrets.NOPE }}", {}, secrets=SECRETS.__getitem__)
    assert info.value.code == "UNKNOWN_SECRET"
    assert info.value.params["name"] == "NOPE"
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ secrets.NOPE }}", {}, secrets=SECRETS.get)
    assert info.value.code == "UNKNOWN_SECRET"


def test_secret_without_a_lookup_raises() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ secrets.CRM_API_KEY }}", CONTEXT)
    assert info.value.code == "SECRETS_UNAVAILABLE"


def test_non_string_secret_is_refused() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ secrets.X }}", {}, secrets=lambda name: 1)  # type: ignore[arg-type,return-value]
    assert info.value.code == "INVALID_SECRET"


def test_redact_walks_structures_and_ignores_empty_secrets() -> None:
    data = {
        "url": "https://x/?k=abc123",
        "abc123": ["abc123abc123", 5, None, ("abc", "xabc123y")],
        "n": 3.5,
    }
    assert redact(data, ["abc123", "", "abc"], mask="#") == {
        "url": "https://x/?k=#",
        "#": ["##", 5, None, ("#", "x#y")],
        "n": 3.5,
    }
    assert redact("nothing", []) == "nothing"
    assert redact("a\\1b", ["\\1"], mask="\\g<0>") == "a\\g<0>b"


def test_redact_terminates_on_cycles_and_fails_closed() -> None:
    cyclic: list[object] = ["secret"]
    cyclic.append(cyclic)
    result = redact(cyclic, ["secret"])
    assert result[0] == "********"
    depth = 0
    node = result
    while isinstance(node, list):
        node = node[1]
        depth += 1
    assert node == "********"
    assert depth < 100


# --- safety --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ __class__ }}",
        "{{ lead.__dict__ }}",
        "{{ lead._internal }}",
        "{{ lead.__class__.__mro__ }}",
        "{{ items.0.__init__.__globals__ }}",
        "{{ _ }}",
    ],
)
def test_private_keys_are_refused(template: str) -> None:
    assert "PRIVATE_KEY" in codes(template)
    with pytest.raises(TemplateSyntaxError) as info:
        render(template)
    assert info.value.code == "PRIVATE_KEY"


@pytest.mark.parametrize(
    "template",
    [
        "{{ lead.email.upper() }}",
        "{{ lead['email'] }}",
        "{{ lead.email + 1 }}",
        "{{ lead.email.__len__ }}",
        "{{ import os }}",
        "{{ lead.owner.email | upper() }}",
    ],
)
def test_calls_and_operators_are_not_part_of_the_grammar(template: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        render(template)


def test_objects_in_the_context_are_not_introspected() -> None:
    class Spy:
        email = "leak@example.com"
        touched = False

        def __getattr__(self, name: str) -> object:
            Spy.touched = True
            raise AssertionError(name)

        def __str__(self) -> str:
            Spy.touched = True
            return "leak"

        __repr__ = __str__

    context = {"lead": Spy()}
    assert render_value("{{ lead.email }}", context).value is None
    assert render_value("x{{ lead.email }}x", context).value == "xx"
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ lead }}", context)
    assert info.value.code == "UNSUPPORTED_VALUE"
    with pytest.raises(TemplateRenderError):
        render_value("x {{ lead }}", context)
    with pytest.raises(TemplateRenderError):
        render_value("{{ wrapper }}", {"wrapper": {"obj": Spy()}})
    assert Spy.touched is False


def test_dict_subclass_hooks_are_bypassed() -> None:
    class Tricky(dict):
        def __getitem__(self, key: object) -> object:
            raise AssertionError("hook called")

        def get(self, *args: object) -> object:
            raise AssertionError("hook called")

        def __missing__(self, key: object) -> object:
            raise AssertionError("hook called")

    context = {"lead": Tricky(email="ada@example.com")}
    assert render_value("{{ lead.email }}/{{ lead.nope }}", context).value == "ada@example.com/"


# --- limits --------------------------------------------------------------------------


def test_output_too_large() -> None:
    context = {"big": "x" * 60_000}
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ big }}{{ big }}", context)
    assert info.value.code == "OUTPUT_TOO_LARGE"
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ big }}", context, limits=Limits(max_output_length=10))
    assert info.value.code == "OUTPUT_TOO_LARGE"
    assert render_value("{{ big }}", context).value == context["big"]


def test_typed_values_are_bounded() -> None:
    """A value that keeps its type is bounded as text is: alone, and copied many times."""
    items = [{"name": "x" * 1000, "n": i} for i in range(900)]  # 0.92 MB as JSON
    with pytest.raises(TemplateRenderError) as alone:
        render_value("{{ items }}", {"items": items * 2})
    assert alone.value.code == "VALUE_TOO_LARGE"
    assert render_value("{{ items }}", {"items": items}).value == items
    config = {f"copy{i}": "{{ items }}" for i in range(22)}  # 0.92 MB in, 20 MB out
    with pytest.raises(TemplateRenderError) as copied:
        render_value(config, {"items": items})
    assert copied.value.code == "VALUE_TOO_LARGE"
    with pytest.raises(TemplateRenderError) as small:
        render_value("{{ items }}", {"items": items}, limits=Limits(max_value_size=100))
    assert small.value.code == "VALUE_TOO_LARGE"
    assert render_value({"a": "{{ n }}", "b": "{{ items }}"}, {"n": 5, "items": [1, 2]}).value == {
        "a": 5,
        "b": [1, 2],
    }


def test_template_too_long() -> None:
    text = "a" * 20_001
    with pytest.raises(TemplateSyntaxError) as info:
        render_value(text, {})
    assert info.value.code == "TEMPLATE_TOO_LONG"
    assert codes(text) == ["TEMPLATE_TOO_LONG"]
    assert render_value(text, {}, limits=Limits(max_template_length=30_000)).value == text


def test_too_many_expressions() -> None:
    text = "{{ a }}" * 201
    with pytest.raises(TemplateSyntaxError) as info:
        render_value(text, {"a": 1})
    assert info.value.code == "TOO_MANY_EXPRESSIONS"
    assert codes(text) == ["TOO_MANY_EXPRESSIONS"]
    assert render_value("{{ a }}" * 200, {"a": 1}).value == "1" * 200


def test_deep_context_paths_are_capped() -> None:
    path = ".".join(["a"] * 33)
    assert codes("{{ " + path + " }}") == ["PATH_TOO_DEEP"]
    deep: dict[str, object] = {}
    node = deep
    for _ in range(31):
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    node["a"] = "bottom"
    assert render_value("{{ " + ".".join(["a"] * 32) + " }}", deep).value == "bottom"


def test_deep_values_are_refused_not_recursed() -> None:
    deep: list[object] = []
    node = deep
    for _ in range(sys.getrecursionlimit() + 10):
        child: list[object] = []
        node.append(child)
        node = child
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ deep | json }}", {"deep": deep})
    assert info.value.code == "VALUE_TOO_DEEP"
    with pytest.raises(TemplateRenderError):
        render_value(deep, {})
    assert validate_value(deep)[0].code == "VALUE_TOO_DEEP"


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "code", "message"),
    [
        ("Hello {{ lead.email", "UNCLOSED_EXPRESSION", "unclosed '{{' at position 6"),
        ("{{ a {{ b }}", "UNCLOSED_EXPRESSION", "unclosed '{{' at position 0"),
        ("{{ }}", "EMPTY_EXPRESSION", "empty expression '{{ }}'"),
        ("{{ | upper }}", "EMPTY_EXPRESSION", "expression has filters but no value before '|'"),
        ("{{ lead..email }}", "BAD_PATH", "invalid path 'lead..email'"),
        ("{{ lead.email. }}", "BAD_PATH", "invalid path 'lead.email.'"),
        ("{{ 0.name }}", "BAD_PATH", "invalid path '0.name'"),
        ("{{ lead-email }}", "BAD_PATH", "invalid path 'lead-email'"),
        ("{{ today.year }}", "BAD_PATH", "'today' is a date token and has no fields"),
        ("{{ lead._secret }}", "PRIVATE_KEY", "keys starting with '_' are not allowed: '_secret'"),
        (
            "{{ a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f.g }}",
            "PATH_TOO_DEEP",
            "path is deeper than 32 segments",
        ),
        ("{{ lead.email | shout }}", "UNKNOWN_FILTER", "unknown filter 'shout'"),
        ("{{ lead.email | }}", "BAD_EXPRESSION", "expected a filter name after '|'"),
        ("{{ lead.email | upper lower }}", "BAD_EXPRESSION", "unexpected 'lower'"),
        ('{{ lead.email | upper:"x" }}', "BAD_FILTER_ARGUMENT", "filter 'upper' takes no"),
        ("{{ lead.email | default }}", "BAD_FILTER_ARGUMENT", "filter 'default' needs an"),
        ("{{ lead.email | date }}", "BAD_FILTER_ARGUMENT", "filter 'date' needs a double"),
        ("{{ lead.email | date:5 }}", "BAD_FILTER_ARGUMENT", "filter 'date' needs a double"),
        ('{{ lead.email | date:"%Y %Q" }}', "BAD_FILTER_ARGUMENT", "does not support '%Q'"),
        ('{{ lead.email | date:"%10Y" }}', "BAD_FILTER_ARGUMENT", "does not support '%1'"),
        ("{{ lead.email | join:3 }}", "BAD_FILTER_ARGUMENT", "filter 'join' needs a double"),
        ("{{ lead.email | truncate }}", "BAD_FILTER_ARGUMENT", "non-negative integer"),
        ("{{ lead.email | truncate:-1 }}", "BAD_FILTER_ARGUMENT", "non-negative integer"),
        ('{{ lead.email | truncate:"5" }}', "BAD_FILTER_ARGUMENT", "non-negative integer"),
        ("{{ lead.email | truncate:99999999999 }}", "BAD_FILTER_ARGUMENT", "too large"),
        ('{{ lead.email | default:"x }}', "BAD_FILTER_ARGUMENT", "unterminated string"),
        ('{{ lead.email | default:"\\q" }}', "BAD_FILTER_ARGUMENT", "unsupported escape"),
        ("{{ lead.email | default:x }}", "BAD_FILTER_ARGUMENT", "double-quoted string or"),
        ("{{ today+x }}", "BAD_DATE_OFFSET", "date offset must be a whole number of days"),
        ("{{ today+1.5 }}", "BAD_DATE_OFFSET", "date offset must be a whole number of days"),
        ("{{ today-9999999 }}", "BAD_DATE_OFFSET", "date offset is larger than"),
        ("{{ now+1 }}", "BAD_DATE_OFFSET", "'now' takes no offset"),
        ("{{ secrets }}", "BAD_SECRET_REFERENCE", "secrets.NAME"),
        ("{{ secrets.A.B }}", "BAD_SECRET_REFERENCE", "secrets.NAME"),
        ("{{ secrets.0 }}", "BAD_SECRET_REFERENCE", "secrets.NAME"),
    ],
)
def test_validation_messages(template: str, code: str, message: str) -> None:
    issues = validate_template(template)
    assert [issue.code for issue in issues] == [code]
    assert message in issues[0].message
    with pytest.raises(TemplateSyntaxError) as info:
        render_value(template, CONTEXT, secrets=SECRETS.get, clock=CLOCK)
    assert info.value.code == code
    assert info.value.issues == tuple(issues)


def test_validation_reports_every_issue() -> None:
    issues = validate_template("{{ a | nope }} {{ _b }} {{ today+x }} {{ }} {{ c")
    assert [issue.code for issue in issues] == [
        "UNKNOWN_FILTER", "PRIVATE_KEY", "BAD_DATE_OFFSET", "EMPTY_EXPRESSION",
        "UNCLOSED_EXPRESSION",
    ]  # fmt: skip


def test_valid_templates_have_no_issues() -> None:
    good = [
        "plain text",
        "{{lead.email}}",
        '{{ today+2 | date:"%d.%m.%Y" }} {{ now }} {{ secrets.API_KEY }} {{ items.0.name }}',
        '{{ x | default:"a | b" | upper | truncate:3 | json }}',
    ]
    for template in good:
        assert validate_template(template) == []


def test_unknown_variables_with_allowed_roots() -> None:
    text = "{{ lead.email }} {{ foo.bar }} {{ foo }} {{ today }} {{ secrets.KEY }} {{ steps.a }}"
    assert validate_template(text) == []
    issues = validate_template(text, allowed_roots={"lead"})
    assert issues == [
        Issue("", "UNKNOWN_VARIABLE", "unknown variable 'foo'"),
        Issue("", "UNKNOWN_VARIABLE", "unknown variable 'today'"),
        Issue("", "UNKNOWN_VARIABLE", "unknown variable 'secrets'"),
        Issue("", "UNKNOWN_VARIABLE", "unknown variable 'steps'"),
    ]
    assert validate_template(text, allowed_roots=BUILTIN_ROOTS | {"lead"}) == [
        Issue("", "UNKNOWN_VARIABLE", "unknown variable 'foo'")
    ]


def test_builtin_roots() -> None:
    assert {"today", "now", "secrets", "steps", "event", "actor", "changes", "run"} <= (
        BUILTIN_ROOTS
    )
    assert {"workflow", "payload"} <= BUILTIN_ROOTS


def test_validate_value_reports_json_paths() -> None:
    config = {
        "url": "https://example.com/{{ lead.id }}",
        "headers": {"Authorization": "Bearer {{ secret.KEY }}", "X-Trace": "{{ }}"},
        "items": ["ok", 3, "{{ lead.email", "{{ lead._x }}"],
        "my key": {"a b": "{{ x | nope }}"},
        "{{ keys are not templates": True,
    }
    found = validate_value(config, allowed_roots=BUILTIN_ROOTS | {"lead"})
    assert [(issue.path, issue.code) for issue in found] == [
        ("config.headers.Authorization", "UNKNOWN_VARIABLE"),
        ("config.headers.X-Trace", "EMPTY_EXPRESSION"),
        ("config.items[2]", "UNCLOSED_EXPRESSION"),
        ("config.items[3]", "PRIVATE_KEY"),
        ('config["my key"]["a b"]', "UNKNOWN_FILTER"),
    ]
    assert validate_value("{{ }}", path="step.title")[0].path == "step.title"
    assert validate_value({"a": [1, None, True]}) == []


def test_template_roots() -> None:
    text = "{{ lead.owner.email }} {{ today+1 }} {{ now }} {{ secrets.K }} {{ steps.x.y }}"
    assert template_roots(text) == {"lead", "today", "now", "secrets", "steps"}
    assert template_roots("no placeholders") == set()
    with pytest.raises(TemplateSyntaxError):
        template_roots("{{ a | nope }}")


def test_render_errors_carry_the_json_path() -> None:
    config = {"steps": [{"body": "ok"}, {"body": "{{ secrets.NOPE }}"}]}
    with pytest.raises(TemplateRenderError) as info:
        render_value(config, {}, secrets=SECRETS.get, path="definition")
    assert info.value.params == {"name": "NOPE", "path": "definition.steps[1].body"}


def test_errors_are_value_errors_with_codes() -> None:
    assert issubclass(TemplateSyntaxError, TemplateError)
    assert issubclass(TemplateRenderError, TemplateError)
    assert issubclass(TemplateError, ValueError)
    error = TemplateRenderError("boom", code="x")
    assert (str(error), error.message, error.code) == ("boom", "boom", "x")


# --- properties ----------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "{{", "}}", "{", "}", "|", ":", ".", '"', "\\", " ", "\n", "\r", "_", "-", "+",
        "lead", "email", "owner", "items", "0", "9", "today", "now", "secrets", "KEY",
        "upper", "default", "date", "int", "float", "json", "join", "truncate", "urlencode",
        "length", "trim", '"%Y"', '"x"', "%", "<", ">", "&", "__class__",
    ]
)  # fmt: skip
_TEMPLATES = st.one_of(st.text(max_size=200), st.lists(_PIECES | st.text(max_size=3)).map("".join))


@settings(max_examples=400, deadline=None)
@given(text=_TEMPLATES, mode=st.sampled_from(["plain", "html", "header"]))
def test_rendering_only_raises_template_errors(text: str, mode: str) -> None:
    for render_function in (render_string, render_value):
        try:
            result = render_function(text, CONTEXT, clock=CLOCK, mode=mode)  # type: ignore[arg-type]
        except (TemplateSyntaxError, TemplateRenderError):
            continue
        if render_function is render_string:
            assert isinstance(result.value, str)
    validate_template(text, allowed_roots=BUILTIN_ROOTS)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300).filter(lambda value: "{{" not in value))
def test_text_without_placeholders_renders_unchanged(text: str) -> None:
    assert render_string(text, CONTEXT).value == text
    assert render_value(text, CONTEXT, mode="html").value == text
    assert validate_template(text) == []


# --- the sum filter ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([10, 20, 30], 60),
        ([], 0),
        ({"equity": 60, "bonds": 30, "cash": 10}, 100),
        ({"equity": 33.3, "bonds": 33.3, "cash": 33.4}, 100),
        ([0.1, 0.2], 0.3),
        ([1.5, 2], 3.5),
        (["40", " 60 "], 100),
        ([10, None, 5], 15),
        ({"a": None}, 0),
        (None, 0),
        ([Decimal("12.50"), 7.5], 20),
        ([-5, 5.0], 0),
        (("1e2",), 100),
    ],
)
def test_sum_filter(value: object, expected: object) -> None:
    result = render_value("{{ weights | sum }}", {"weights": value}).value
    assert result == expected
    assert type(result) is type(expected)


def test_sum_of_form_results_in_a_validate_config() -> None:
    context = {"steps": {"products": {"result": {"equity": 55, "bonds": 45}}}}
    value = render_value({"total": "{{steps.products.result|sum}}"}, context).value
    assert value == {"total": 100}
    assert render_string("total={{steps.products.result|sum}}%", context).value == "total=100%"


def test_sum_of_a_missing_path_is_zero() -> None:
    assert render_value("{{ steps.skipped.result | sum }}", {"steps": {}}).value == 0


@pytest.mark.parametrize(
    "value",
    [
        [1, "two"],
        [True, 1],
        [1, [2]],
        [1, {"x": 2}],
        "100",
        42,
        [float("inf")],
        ["nan"],
        ["1e999"],
        {"a": "x"},
    ],
)
def test_sum_refuses_what_is_not_a_number(value: object) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render_value("{{ weights | sum }}", {"weights": value})
    assert info.value.code == "FILTER_ERROR"
    assert info.value.params["filter"] == "sum"


def test_sum_takes_no_argument() -> None:
    assert [issue.code for issue in validate_template("{{ w | sum:2 }}")] == ["BAD_FILTER_ARGUMENT"]


def test_sum_does_not_call_methods_of_subclasses() -> None:
    class Sneaky(dict):
        def values(self):  # type: ignore[override]
            raise AssertionError("called")

    assert render_value("{{ w | sum }}", {"w": Sneaky(a=1, b=2)}).value == 3
