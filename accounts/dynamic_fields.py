"""Form fields from definitions staff write in the admin.

A :class:`accounts.models.FieldDefinition` (a registration flow's custom
question, a KYC questionnaire's question) says what to ask: its kind (text,
number, date, one choice, several choices, checkbox), whether an answer is
required, a help text, choices, bounds and a pattern. Two functions turn it
into something a form and the database can use, so that every form built from
definitions validates the same way:

- :func:`form_field_for` gives the Django form field that asks it;
- :func:`answer_to_json` turns the field's cleaned value into what is stored
  in a JSON column (dates in ISO format, decimals as strings, never floats).

The admin checks definitions with :func:`definition_errors` before saving, so
that a broken pattern or a badly written list of choices never reaches a
client's form.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.utils.html import escape

from .models import FieldDefinition

# A text answer is kept short unless the definition says otherwise, and never
# longer than the cap: answers live in JSON columns and in the admin's pages.
TEXT_DEFAULT_MAX_LENGTH = 500
TEXT_MAX_LENGTH = 2000
# A maximum above this gives a text area rather than one line.
TEXT_AREA_FROM = 200
# A select instead of radio buttons above this many choices.
RADIO_UP_TO = 5
CHOICE_VALUE_MAX_LENGTH = 100
# Dates outside these years are typing mistakes (or probes), not answers.
DATE_MIN = date(1900, 1, 1)
DATE_MAX = date(2199, 12, 31)


class ChoicesError(ValueError):
    """The choices of a definition cannot be read (the message says why)."""


def parse_choices(text: str) -> list[tuple[str, str]]:
    """The choices written one per line as ``value|Label`` or just ``Label``
    (the label is then the value too). Blank lines are skipped.

    Raises :class:`ChoicesError` on an empty value, a value used twice or a
    value longer than :data:`CHOICE_VALUE_MAX_LENGTH`: the stored answer is
    the value, so values must be unique and stable.
    """
    choices: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        value, _, label = line.partition("|")
        value, label = value.strip(), label.strip() or value.strip()
        if not value:
            raise ChoicesError(f"Line {number}: the value before '|' is empty.")
        if len(value) > CHOICE_VALUE_MAX_LENGTH:
            raise ChoicesError(
                f"Line {number}: a value may have at most {CHOICE_VALUE_MAX_LENGTH} characters."
            )
        if value in seen:
            raise ChoicesError(f"Line {number}: the value {value!r} is used twice.")
        seen.add(value)
        choices.append((value, label))
    return choices


def _count(bound: Decimal | None) -> int | None:
    return None if bound is None else max(0, int(bound))


def definition_errors(definition: FieldDefinition) -> dict[str, str]:
    """What is wrong with a definition, by model field name (empty when it is
    usable). Used by the admin; :func:`form_field_for` assumes a clean one."""
    errors: dict[str, str] = {}
    kind = definition.kind
    low, high = definition.min_value, definition.max_value
    if kind in (FieldDefinition.CHOICE, FieldDefinition.MULTIPLE_CHOICE):
        try:
            if not parse_choices(definition.choices):
                errors["choices"] = "List the choices, one per line."
        except ChoicesError as exc:
            errors["choices"] = str(exc)
    elif definition.choices.strip():
        errors["choices"] = "Only choice questions have choices."
    if low is not None and high is not None and low > high:
        errors["max_value"] = "The largest value is below the smallest."
    if kind in (FieldDefinition.TEXT, FieldDefinition.MULTIPLE_CHOICE):
        for name, bound in (("min_value", low), ("max_value", high)):
            if bound is not None and (bound < 0 or bound != bound.to_integral_value()):
                errors[name] = "For text (length) and several choices (count), a whole number."
        if kind == FieldDefinition.TEXT and high is not None and high > TEXT_MAX_LENGTH:
            errors["max_value"] = f"Text answers are at most {TEXT_MAX_LENGTH} characters."
    elif kind in (FieldDefinition.DATE, FieldDefinition.CHECKBOX, FieldDefinition.CHOICE):
        for name, bound in (("min_value", low), ("max_value", high)):
            if bound is not None:
                errors[name] = "Only numbers, text and several choices have bounds."
    if definition.regex:
        if kind != FieldDefinition.TEXT:
            errors["regex"] = "Only text answers have a pattern."
        else:
            try:
                re.compile(definition.regex)
            except re.error as exc:
                errors["regex"] = f"This is not a valid regular expression: {exc}."
    return errors


def _text_field(definition: FieldDefinition, common: dict[str, Any]) -> forms.Field:
    max_length = _count(definition.max_value) or TEXT_DEFAULT_MAX_LENGTH
    max_length = min(max_length, TEXT_MAX_LENGTH)
    validators = []
    if definition.regex:
        # The whole answer must match, not a part of it.
        validators.append(
            RegexValidator(
                rf"^(?:{definition.regex})\Z",
                message=definition.regex_message or "Enter the answer in the format asked for.",
            )
        )
    # A text area only when staff asked for long answers.
    long_answer = definition.max_value is not None and max_length > TEXT_AREA_FROM
    widget: forms.Widget = forms.Textarea(attrs={"rows": 3}) if long_answer else forms.TextInput()
    return forms.CharField(
        max_length=max_length,
        min_length=_count(definition.min_value) or None,
        validators=validators,
        widget=widget,
        **common,
    )


def _number_field(definition: FieldDefinition, common: dict[str, Any]) -> forms.Field:
    field = forms.DecimalField(
        max_digits=20,
        decimal_places=4,
        min_value=definition.min_value,
        max_value=definition.max_value,
        widget=forms.NumberInput(attrs={"inputmode": "decimal"}),
        **common,
    )
    field.widget.attrs["step"] = "any"
    return field


def _date_in_range(value: date) -> None:
    if not DATE_MIN <= value <= DATE_MAX:
        raise ValidationError("Enter a real date.", code="date_range")


def _date_field(definition: FieldDefinition, common: dict[str, Any]) -> forms.Field:
    return forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        validators=[_date_in_range],
        **common,
    )


def _choice_field(definition: FieldDefinition, common: dict[str, Any]) -> forms.Field:
    choices = parse_choices(definition.choices)
    if len(choices) <= RADIO_UP_TO:
        return forms.ChoiceField(choices=choices, widget=forms.RadioSelect, **common)
    return forms.ChoiceField(choices=[("", "Choose one"), *choices], **common)


def _multiple_choice_field(definition: FieldDefinition, common: dict[str, Any]) -> forms.Field:
    low, high = _count(definition.min_value), _count(definition.max_value)

    def count_in_range(values: list[str]) -> None:
        if low and len(values) < low:
            raise ValidationError(f"Choose at least {low}.", code="too_few")
        if high is not None and len(values) > high:
            raise ValidationError(f"Choose at most {high}.", code="too_many")

    return forms.MultipleChoiceField(
        choices=parse_choices(definition.choices),
        widget=forms.CheckboxSelectMultiple,
        validators=[count_in_range],
        **common,
    )


def _checkbox_field(definition: FieldDefinition, common: dict[str, Any]) -> forms.Field:
    # A required checkbox must be ticked (an agreement, a confirmation).
    common["error_messages"] = {"required": "Tick this box to continue."}
    return forms.BooleanField(**common)


_BUILDERS = {
    FieldDefinition.TEXT: _text_field,
    FieldDefinition.NUMBER: _number_field,
    FieldDefinition.DATE: _date_field,
    FieldDefinition.CHOICE: _choice_field,
    FieldDefinition.MULTIPLE_CHOICE: _multiple_choice_field,
    FieldDefinition.CHECKBOX: _checkbox_field,
}


def form_field_for(definition: FieldDefinition) -> forms.Field:
    """The form field that asks ``definition``.

    - text: a one-line input (a text area when ``max_value`` is above 200), length
      between ``min_value`` and ``max_value`` (500 when no maximum is set,
      never above 2000), the whole answer matching ``regex`` when one is set,
      with ``regex_message`` as the error;
    - number: a decimal (4 places at most) between ``min_value`` and
      ``max_value``; never a float;
    - date: a date picker; years 1900 to 2199;
    - choice: radio buttons (a select above five choices) over ``choices``;
    - multiple_choice: checkboxes; ``min_value`` / ``max_value`` bound how
      many may be ticked;
    - checkbox: a single box; when ``required``, it must be ticked.

    Labels and help texts come from the definition; Django ties errors and
    help texts to the input with ``aria-describedby``.
    """
    try:
        builder = _BUILDERS[definition.kind]
    except KeyError:
        raise ValueError(f"Unknown field kind {definition.kind!r}") from None
    common: dict[str, Any] = {
        "label": definition.label,
        "required": definition.required,
        # Templates print help texts as HTML (Django's convention); staff
        # write plain text.
        "help_text": escape(definition.help_text),
    }
    return builder(definition, common)


def answer_to_json(definition: FieldDefinition, value: Any) -> Any:
    """``value`` (a cleaned value of :func:`form_field_for`'s field) as it is
    stored in a JSON column: dates as ``YYYY-MM-DD``, decimals as strings
    (``"1250.5"``; JSON numbers would become floats), several choices as a
    list of values, a checkbox as a boolean; an unanswered optional question
    as ``None``."""
    if definition.kind == FieldDefinition.CHECKBOX:
        return bool(value)
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)


def answer_display(definition: FieldDefinition, stored: Any) -> str:
    """A stored answer in words, for staff: choice labels rather than values,
    "yes" / "no" for a checkbox, "-" when unanswered."""
    if definition.kind == FieldDefinition.CHECKBOX:
        return "yes" if stored else "no"
    if stored is None or stored == "" or stored == []:
        return "-"
    if definition.kind in (FieldDefinition.CHOICE, FieldDefinition.MULTIPLE_CHOICE):
        try:
            labels = dict(parse_choices(definition.choices))
        except ChoicesError:
            labels = {}
        values = stored if isinstance(stored, list) else [stored]
        return ", ".join(labels.get(str(v), str(v)) for v in values)
    return str(stored)
