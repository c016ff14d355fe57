"""Form fields from staff-written definitions (accounts.dynamic_fields), as
the sign-up flows and the KYC questionnaires use them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django import forms

from accounts.dynamic_fields import (
    ChoicesError,
    answer_display,
    answer_to_json,
    definition_errors,
    form_field_for,
    parse_choices,
)
from accounts.models import RegistrationField


def definition(**values) -> RegistrationField:
    values.setdefault("name", "q")
    values.setdefault("label", "Question")
    return RegistrationField(**values)


def clean(field: forms.Field, value):
    return field.clean(field.widget.value_from_datadict({"q": value}, {}, "q"))


def errors(field: forms.Field, value) -> list[str]:
    try:
        clean(field, value)
    except forms.ValidationError as exc:
        return exc.messages
    return []


# --- text ------------------------------------------------------------------------------


def test_text_length_pattern_and_message():
    field = form_field_for(
        definition(
            kind="text",
            min_value=Decimal(3),
            max_value=Decimal(11),
            regex=r"[A-Z]{2}\d+",
            regex_message="Two letters, then digits.",
        )
    )
    assert isinstance(field.widget, forms.TextInput)
    assert clean(field, "  AB123 ") == "AB123"
    assert "Ensure this value has at least 3 characters (it has 2)." in errors(field, "AB")
    assert "Ensure this value has at most 11 characters" in errors(field, "AB1234567890")[0]
    assert errors(field, "ab123") == ["Two letters, then digits."]
    # The whole answer must match.
    assert errors(field, "xAB123") == ["Two letters, then digits."]
    assert clean(field, "AB123\n") == "AB123"  # surrounding spaces are not part of it
    assert errors(field, "AB1\n23") == ["Two letters, then digits."]


def test_text_has_a_default_and_a_hard_limit():
    field = form_field_for(definition(kind="text"))
    assert field.max_length == 500
    assert isinstance(field.widget, forms.TextInput)
    long = form_field_for(definition(kind="text", max_value=Decimal(1500)))
    assert long.max_length == 1500 and isinstance(long.widget, forms.Textarea)
    assert errors(field, "x" * 501)
    assert form_field_for(definition(kind="text", max_value=Decimal(10**6))).max_length == 2000


def test_text_optional_and_required():
    assert errors(form_field_for(definition(kind="text")), "") == ["This field is required."]
    assert clean(form_field_for(definition(kind="text", required=False)), "") == ""


def test_help_text_is_plain_text():
    field = form_field_for(definition(kind="text", help_text="<b>bold</b> & more"))
    assert field.help_text == "&lt;b&gt;bold&lt;/b&gt; &amp; more"


# --- number ------------------------------------------------------------------------------


def test_number_is_a_decimal_within_bounds():
    field = form_field_for(
        definition(kind="number", min_value=Decimal("0"), max_value=Decimal("100"))
    )
    assert clean(field, "12.5") == Decimal("12.5")
    assert isinstance(clean(field, "12.5"), Decimal)
    assert errors(field, "-1") == ["Ensure this value is greater than or equal to 0."]
    assert errors(field, "100.01") == ["Ensure this value is less than or equal to 100."]
    for junk in ("abc", "NaN", "Infinity", "1e400", "1.23456"):
        assert errors(field, junk), junk
    assert field.widget.attrs["inputmode"] == "decimal"


# --- date ---------------------------------------------------------------------------------


def test_date_parses_iso_and_refuses_absurd_years():
    field = form_field_for(definition(kind="date"))
    assert field.widget.input_type == "date"
    assert clean(field, "2024-02-29") == date(2024, 2, 29)
    assert errors(field, "2023-02-29") == ["Enter a valid date."]
    assert errors(field, "1066-10-14") == ["Enter a real date."]
    assert errors(field, "9999-12-31") == ["Enter a real date."]


# --- choices --------------------------------------------------------------------------------


def test_choice_radio_up_to_five_select_above():
    few = form_field_for(definition(kind="choice", choices="a|Alpha\nb|Beta\n\nGamma"))
    assert isinstance(few.widget, forms.RadioSelect)
    assert few.choices == [("a", "Alpha"), ("b", "Beta"), ("Gamma", "Gamma")]
    assert clean(few, "a") == "a"
    assert errors(few, "Alpha") == [
        "Select a valid choice. Alpha is not one of the available choices."
    ]
    many = form_field_for(definition(kind="choice", choices="\n".join("abcdefg")))
    assert isinstance(many.widget, forms.Select)
    assert many.choices[0] == ("", "Choose one")
    assert errors(many, "") == ["This field is required."]


def test_multiple_choice_counts_within_bounds():
    field = form_field_for(
        definition(
            kind="multiple_choice",
            choices="fx\nstocks\ncrypto\nbonds",
            min_value=Decimal(1),
            max_value=Decimal(2),
        )
    )
    assert isinstance(field.widget, forms.CheckboxSelectMultiple)
    data = {"q": ["fx", "crypto"]}
    assert field.clean(field.widget.value_from_datadict(_multi(data), {}, "q")) == ["fx", "crypto"]
    with pytest.raises(forms.ValidationError, match="Choose at most 2."):
        field.clean(["fx", "stocks", "crypto"])
    optional = form_field_for(
        definition(
            kind="multiple_choice", choices="fx\nstocks", min_value=Decimal(1), required=False
        )
    )
    assert optional.clean([]) == []
    with pytest.raises(forms.ValidationError, match="not one of the available choices"):
        field.clean(["fx", "gold"])


def _multi(data):
    from django.http import QueryDict

    query = QueryDict(mutable=True)
    for key, values in data.items():
        query.setlist(key, values)
    return query


def test_checkbox_required_means_ticked():
    field = form_field_for(definition(kind="checkbox", label="I am not a US person"))
    assert errors(field, "") == ["Tick this box to continue."]
    assert clean(field, "on") is True
    assert clean(form_field_for(definition(kind="checkbox", required=False)), "") is False


def test_an_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="Unknown field kind"):
        form_field_for(definition(kind="signature"))


# --- parsing and checking definitions --------------------------------------------------------


def test_parse_choices():
    assert parse_choices(" yes | Yes, I do \nno|No\n\n") == [("yes", "Yes, I do"), ("no", "No")]
    with pytest.raises(ChoicesError, match="used twice"):
        parse_choices("a|A\na|B")
    with pytest.raises(ChoicesError, match="empty"):
        parse_choices("|Label")
    with pytest.raises(ChoicesError, match="at most 100"):
        parse_choices("x" * 101)


@pytest.mark.parametrize(
    "values,field",
    [
        ({"kind": "choice", "choices": ""}, "choices"),
        ({"kind": "text", "choices": "a\nb"}, "choices"),
        ({"kind": "text", "regex": "(unclosed"}, "regex"),
        ({"kind": "number", "regex": r"\d+"}, "regex"),
        ({"kind": "text", "min_value": Decimal("2.5")}, "min_value"),
        ({"kind": "text", "min_value": Decimal("-1")}, "min_value"),
        ({"kind": "number", "min_value": Decimal(5), "max_value": Decimal(1)}, "max_value"),
        ({"kind": "date", "min_value": Decimal(1)}, "min_value"),
        ({"kind": "checkbox", "max_value": Decimal(1)}, "max_value"),
        ({"kind": "text", "max_value": Decimal(5000)}, "max_value"),
    ],
)
def test_definition_errors(values, field):
    assert field in definition_errors(definition(**values))


def test_good_definitions_have_no_errors():
    for values in (
        {"kind": "text", "regex": r"\d{11}", "min_value": Decimal(11), "max_value": Decimal(11)},
        {"kind": "number", "min_value": Decimal("-5.5"), "max_value": Decimal(10)},
        {"kind": "choice", "choices": "a|A\nb|B"},
        {"kind": "multiple_choice", "choices": "a\nb", "max_value": Decimal(2)},
        {"kind": "date"},
        {"kind": "checkbox"},
    ):
        assert definition_errors(definition(**values)) == {}, values


# --- storing answers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,value,stored",
    [
        ("text", "Hello", "Hello"),
        ("text", "", None),
        ("number", Decimal("1250.5000"), "1250.5"),
        ("number", Decimal("100"), "100"),
        ("number", Decimal("0.0001"), "0.0001"),
        ("number", None, None),
        ("date", date(1990, 12, 10), "1990-12-10"),
        ("choice", "b", "b"),
        ("multiple_choice", ["fx", "crypto"], ["fx", "crypto"]),
        ("multiple_choice", [], None),
        ("checkbox", True, True),
        ("checkbox", False, False),
    ],
)
def test_answer_to_json(kind, value, stored):
    result = answer_to_json(definition(kind=kind), value)
    assert result == stored
    assert not isinstance(result, float)


def test_answers_round_trip_through_the_form():
    import json

    field = form_field_for(definition(kind="number"))
    stored = json.loads(json.dumps(answer_to_json(definition(kind="number"), clean(field, "0.1"))))
    assert Decimal(stored) == Decimal("0.1")


def test_answer_display_uses_choice_labels():
    choice = definition(kind="multiple_choice", choices="fx|Forex\ncrypto|Crypto")
    assert answer_display(choice, ["fx", "crypto"]) == "Forex, Crypto"
    assert answer_display(choice, ["gone"]) == "gone"
    assert answer_display(definition(kind="checkbox"), True) == "yes"
    assert answer_display(definition(kind="text"), None) == "-"
