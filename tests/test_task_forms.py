"""Task forms are Django forms built from the field declaration: a page's POST and the
API's JSON clean to the same values with the same messages and codes. No database."""

from __future__ import annotations

from django.http import QueryDict

from tasks_inbox.form_schema import FIELD_CLASSES, FIELD_TYPES, form_clean, task_form

FORM = {
    "fields": [
        {"name": "summary", "type": "textarea", "required": True, "min": 3},
        {"name": "score", "type": "number", "min": 1, "max": 5, "required": True},
        {"name": "channel", "type": "select", "choices": [{"value": "phone"}, "email", 3]},
        {"name": "tags", "type": "multiselect", "choices": ["vip", "new"], "max": 1},
        {"name": "ok", "type": "boolean", "label": "Checked"},
        {"name": "on", "type": "date", "min": "2020-01-01"},
    ]
}


def posted(**values: str | list[str]) -> QueryDict:
    query = QueryDict(mutable=True)
    for name, value in values.items():
        query.setlist(name, value if isinstance(value, list) else [value])
    return query


def test_every_declared_type_has_its_field_class() -> None:
    assert set(FIELD_CLASSES) == set(FIELD_TYPES)


def test_a_page_post_and_the_api_json_clean_alike() -> None:
    page = posted(summary=" Done. ", score="4", channel="3", tags=["vip"], ok="on", on="2031-01-02")
    submitted = task_form(FORM, data=page).submitted()
    assert submitted["ok"] is True and submitted["tags"] == ["vip"]
    from_page, page_errors = form_clean(FORM, submitted)
    from_api, api_errors = form_clean(
        FORM,
        {
            "summary": "Done.",
            "score": 4,
            "channel": 3,
            "tags": ["vip"],
            "ok": True,
            "on": "2031-01-02",
        },
    )
    assert page_errors == api_errors == {}
    assert (
        from_page
        == from_api
        == {
            "summary": "Done.",
            "score": 4,
            "channel": 3,
            "tags": ["vip"],
            "ok": True,
            "on": "2031-01-02",
        }
    )


def test_each_wrong_field_has_one_message_and_a_code() -> None:
    bound = task_form(
        FORM,
        data={
            "summary": "hi",
            "score": "x",
            "channel": "fax",
            "tags": ["vip", "new"],
            "on": "1999-01-01",
        },
    )
    assert not bound.is_valid()
    assert bound.errors_at("data") == {
        "data.summary": ["at least 3 characters"],
        "data.score": ["must be a number"],
        "data.channel": ["'fax' is not one of the choices"],
        "data.tags": ["choose at most 1"],
        "data.on": ["must be on or after 2020-01-01"],
    }
    codes = {name: [e.code for e in errors] for name, errors in bound.errors.as_data().items()}
    assert codes == {
        "summary": ["min_length"],
        "score": ["invalid"],
        "channel": ["invalid_choice"],
        "tags": ["max_length"],
        "on": ["min_value"],
    }


def test_unknown_keys_come_first_and_every_field_is_cleaned() -> None:
    cleaned, errors = form_clean(FORM, {"colour": "red", "score": 9})
    assert list(errors) == ["data.colour", "data.summary", "data.score"]
    assert errors["data.score"] == ["must be at most 5"]
    assert form_clean(FORM, ["not", "an", "object"]) == (
        {},
        {"data": ["must be an object of field values"]},
    )
    cleaned, errors = form_clean(FORM, {"summary": "Fine", "score": 2})
    assert errors == {}
    assert cleaned == {
        "summary": "Fine",
        "score": 2,
        "channel": None,
        "tags": [],
        "ok": False,
        "on": None,
    }


def test_the_page_renders_what_the_form_declares() -> None:
    fields = task_form(FORM).rendered({"tags": ["new"]}, {"data.score": ["must be a number"]})
    by_name = {f["name"]: f for f in fields}
    assert by_name["ok"]["label"] == "Checked" and by_name["summary"]["label"] == "Summary"
    assert by_name["score"]["min"] == 1 and by_name["summary"]["min"] is None
    assert by_name["score"]["errors"] == ["must be a number"]
    assert [o["selected"] for o in by_name["tags"]["options"]] == [False, True]
    assert [o["label"] for o in by_name["channel"]["options"]] == ["phone", "email", "3"]
