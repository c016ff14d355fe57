"""The trader's verification for the mobile app: where they stand (level,
limits with what is used, every item's status and the reviewer's reason),
one requirement's details, uploading a document, answering a questionnaire.

The same selectors, forms and services as the room's pages
(``kyc.views.room``): a requirement id that does not apply to this client is
a 404. Errors take the API's one shape, ``{"detail", "code"}``: 400 a
malformed request (with ``errors`` by field), 404 no such requirement, 422 a
request the rules refuse (``refused``: pending review, rejected, a document
past its date; ``document_rejected``: a file refused by its content, with the
field under ``errors``; ``country_blocked``). A refused request stores nothing.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import parser_classes
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from payments.api.common import ApiError, api_view, decimal_text, errors

from .. import selectors, services
from ..display import Item, LimitGroup, item_for, level_gives, limit_group
from ..documents import DocumentRejected
from ..exceptions import KycError
from ..forms import DocumentForm, QuestionnaireForm
from ..models import BACK, FRONT, PAGE, Level, Requirement

# --- what is answered -------------------------------------------------------------


def _text(value: Decimal | None) -> str | None:
    return decimal_text(value, 2)


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _limits(group: LimitGroup) -> dict:
    lines = {"Today": "daily", "This month": "monthly"}
    data: dict = {"allowed": group.allowed}
    for line in group.lines:
        data[lines[line.period]] = {
            "limit": _text(line.limit),
            "used": _text(line.used.quantize(Decimal("0.01"))) if line.used is not None else None,
        }
    if group.problem:
        data["problem"] = group.problem
    return data


def _level(level: Level) -> dict:
    return {
        "number": level.number,
        "name": level.name,
        "description": level.description,
        "gives": level_gives(level),
    }


def _item(item: Item) -> dict:
    requirement, submission = item.requirement, item.submission
    return {
        "requirement": requirement.pk,
        "name": requirement.name,
        "kind": requirement.kind,
        "level": requirement.level.number,
        "status": item.status,
        "status_label": item.status_label,
        "can_submit": item.state.can_submit,
        "blocked_reason": item.state.blocked_reason,
        "reason": item.reason,
        "note": item.note,
        "submitted_at": _iso(submission.submitted_at) if submission else None,
        "decided_at": _iso(submission.decided_at) if submission else None,
        "valid_until": _iso(item.valid_until),
        "renewal_due": item.renewal_due,
        "retake_at": _iso(item.retake_at),
    }


STATUS_HELP = (
    "missing (nothing sent), pending (being reviewed), approved, rejected (see reason and "
    "note), resubmit (send it again: see reason and note), expired."
)

ITEM_FIELDS = {
    "requirement": serializers.IntegerField(help_text="The requirement's id."),
    "name": serializers.CharField(),
    "kind": serializers.ChoiceField(Requirement.KINDS),
    "level": serializers.IntegerField(help_text="The level that asks for it."),
    "status": serializers.CharField(help_text=STATUS_HELP),
    "status_label": serializers.CharField(),
    "can_submit": serializers.BooleanField(),
    "blocked_reason": serializers.CharField(help_text="Why it cannot be sent now."),
    "reason": serializers.CharField(help_text="The reviewer's reason (rejected, resubmit)."),
    "note": serializers.CharField(help_text="The reviewer's note."),
    "submitted_at": serializers.DateTimeField(allow_null=True),
    "decided_at": serializers.DateTimeField(allow_null=True),
    "valid_until": serializers.DateField(allow_null=True, help_text="An approval's last day."),
    "renewal_due": serializers.BooleanField(help_text="Approved, and may be renewed now."),
    "retake_at": serializers.DateTimeField(
        allow_null=True, help_text="A failed questionnaire: when it may be taken again."
    ),
}


def item_serializer(**kwargs):
    return inline_serializer("KycItem", ITEM_FIELDS, **kwargs)


ItemSerializer = item_serializer()
LimitSerializer = inline_serializer(
    "KycLimit",
    {
        "limit": serializers.CharField(allow_null=True, help_text="null: no limit."),
        "used": serializers.CharField(allow_null=True, help_text="null: unknown just now."),
    },
)
LimitsSerializer = inline_serializer(
    "KycLimits",
    {
        "allowed": serializers.BooleanField(),
        "daily": LimitSerializer,
        "monthly": LimitSerializer,
        "problem": serializers.CharField(required=False),
    },
)
LevelSerializer = inline_serializer(
    "KycLevel",
    {
        "number": serializers.IntegerField(),
        "name": serializers.CharField(),
        "description": serializers.CharField(),
        "gives": serializers.ListField(child=serializers.CharField()),
    },
)
OverviewSerializer = inline_serializer(
    "KycOverview",
    {
        "level": LevelSerializer,
        "limits_currency": serializers.CharField(),
        "deposits": LimitsSerializer,
        "withdrawals": LimitsSerializer,
        "live_accounts": serializers.BooleanField(),
        "transfers": serializers.BooleanField(),
        "country_blocked": serializers.BooleanField(),
        "next_level": serializers.IntegerField(allow_null=True),
        "levels": serializers.ListField(
            child=inline_serializer(
                "KycLevelItems",
                {
                    "level": LevelSerializer,
                    "held": serializers.BooleanField(help_text="The client has this level."),
                    "items": item_serializer(many=True),
                },
            )
        ),
    },
)


@extend_schema(
    responses={200: OverviewSerializer, **errors(401)},
    summary="Your verification: level, limits with what is used, every item's status",
)
@api_view(["GET"])
def verification(request):
    user = request.user
    try:
        data = selectors.verification_overview(user)
    except Level.DoesNotExist:
        data = None
    if data is None or not data.levels:
        raise ApiError(
            "Verification is not available yet.",
            code="not_configured",
            status_code=status.HTTP_404_NOT_FOUND,
        )
    level = data.level
    held = [_item(item_for(state)) for state in data.held]
    levels: list[dict] = []
    held_levels = [lvl for lvl in data.levels if lvl.number <= level.number]
    if held_levels:
        levels.append({"level": _level(level), "held": True, "items": held})
    for progress in data.upcoming:
        levels.append(
            {
                "level": _level(progress.level),
                "held": False,
                "items": [_item(item_for(state)) for state in progress.items],
            }
        )
    body = {
        "level": _level(level),
        "limits_currency": level.limits_currency_id,
        "deposits": _limits(
            limit_group(user, level, title="Deposits", allowed=True, kind="deposit")
        ),
        "withdrawals": _limits(
            limit_group(
                user,
                level,
                title="Withdrawals",
                allowed=level.allows_withdrawals,
                kind="withdrawal",
            )
        ),
        "live_accounts": level.allows_live_accounts,
        "transfers": level.allows_transfers,
        "country_blocked": data.country_blocked,
        "next_level": data.next_level.number if data.next_level else None,
        "levels": levels,
    }
    return Response(body)


# --- one requirement -----------------------------------------------------------------


def _requirement(request, requirement_id: int) -> tuple[Requirement, Item]:
    requirement = selectors.requirement_get_for_user(
        user=request.user, requirement_id=requirement_id
    )
    return requirement, item_for(
        selectors.requirement_status(user=request.user, requirement=requirement)
    )


RequirementSerializer = inline_serializer(
    "KycRequirement",
    {
        "item": ItemSerializer,
        "instructions": serializers.CharField(),
        "document": inline_serializer(
            "KycDocumentAsk",
            {
                "kinds": serializers.ListField(
                    child=inline_serializer(
                        "KycDocumentKind",
                        {
                            "kind": serializers.CharField(),
                            "label": serializers.CharField(),
                            "files": serializers.ListField(
                                child=serializers.CharField(),
                                help_text="The multipart fields to send: front and back, or "
                                "page (repeated, up to 3).",
                            ),
                        },
                    )
                ),
                "issued_on": serializers.BooleanField(help_text="The issue date is required."),
                "expires_on": serializers.BooleanField(help_text="The expiry date is required."),
                "document_number": serializers.BooleanField(help_text="A number may be given."),
                "max_bytes": serializers.IntegerField(),
            },
            allow_null=True,
        ),
        "questions": serializers.ListField(
            allow_null=True,
            child=inline_serializer(
                "KycQuestion",
                {
                    "name": serializers.CharField(),
                    "label": serializers.CharField(),
                    "kind": serializers.CharField(
                        help_text="text, number, date, choice, multiple_choice or checkbox."
                    ),
                    "required": serializers.BooleanField(),
                    "help_text": serializers.CharField(),
                    "choices": serializers.ListField(
                        child=serializers.ListField(child=serializers.CharField()),
                        help_text="[value, label] pairs.",
                    ),
                },
            ),
        ),
    },
)

API_SIDE_FIELDS = {FRONT: "front", BACK: "back", PAGE: "page"}


def _document_ask(requirement: Requirement) -> dict:
    form = DocumentForm(requirement=requirement)
    return {
        "kinds": [
            {
                "kind": option.value,
                "label": option.label,
                "files": [API_SIDE_FIELDS[side] for side in form.side_sets[option.value]],
            }
            for option in form.kind_options
        ],
        "issued_on": "issued_on" in form.fields,
        "expires_on": "expires_on" in form.fields,
        "document_number": "document_number" in form.fields,
        "max_bytes": settings.KYC_DOCUMENT_MAX_BYTES,
    }


def _questions(requirement: Requirement) -> list[dict] | None:
    from accounts.dynamic_fields import ChoicesError, parse_choices

    questionnaire = requirement.questionnaire
    if questionnaire is None or not questionnaire.is_active:
        return None
    result = []
    for question in questionnaire.questions.order_by("order", "id"):
        try:
            choices = parse_choices(question.choices) if question.choices else []
        except ChoicesError:
            choices = []
        result.append(
            {
                "name": question.name,
                "label": question.label,
                "kind": question.kind,
                "required": question.required,
                "help_text": question.help_text,
                "choices": [list(choice) for choice in choices],
            }
        )
    return result


@extend_schema(
    responses={200: RequirementSerializer, **errors(401, 404)},
    summary="One requirement: its status and what to send (document kinds, questions)",
)
@api_view(["GET"])
def requirement_detail(request, requirement_id: int):
    requirement, item = _requirement(request, requirement_id)
    body = {
        "item": _item(item),
        "instructions": requirement.instructions,
        "document": _document_ask(requirement)
        if requirement.kind == Requirement.DOCUMENT
        else None,
        "questions": _questions(requirement)
        if requirement.kind == Requirement.QUESTIONNAIRE
        else None,
    }
    return Response(body)


# --- sending ---------------------------------------------------------------------------


def _refuse_blocked_country(user) -> None:
    if selectors.country_blocked(selectors.client_country(user=user)):
        raise ApiError(
            services.COUNTRY_BLOCKED,
            code="country_blocked",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )


def _form_errors(form, *, rename: dict[str, str] | None = None, under: str = "") -> ApiError:
    """A form's errors in the API's shape: by field (the API's names), nested
    under ``under`` (``answers``) when given; ``detail`` names the first."""
    rename = rename or {}
    by_field = {
        "non_field_errors" if name == "__all__" else rename.get(name, name): list(messages)
        for name, messages in form.errors.items()
    }
    name, messages = next(iter(by_field.items()))
    path = ".".join(p for p in (under, "" if name == "non_field_errors" else name) if p)
    detail = f"{path}: {messages[0]}" if path else messages[0]
    return ApiError(detail, code="invalid", errors={under: by_field} if under else by_field)


def _created(requirement: Requirement, request) -> Response:
    item = item_for(selectors.requirement_status(user=request.user, requirement=requirement))
    return Response({"item": _item(item)}, status=status.HTTP_201_CREATED)


CreatedSerializer = inline_serializer("KycSubmitted", {"item": ItemSerializer})
# The form's field names → the multipart names of the API.
FORM_TO_API = {"pages": "page"}


@extend_schema(
    request={
        "multipart/form-data": inline_serializer(
            "KycDocumentUpload",
            {
                "document_kind": serializers.CharField(
                    help_text="One of the requirement's kinds (GET the requirement)."
                ),
                "front": serializers.FileField(required=False, help_text="A card's front."),
                "back": serializers.FileField(required=False, help_text="A card's back."),
                "page": serializers.ListField(
                    child=serializers.FileField(),
                    required=False,
                    help_text="A one-sided document's pages (repeat the field, up to 3).",
                ),
                "issued_on": serializers.DateField(required=False),
                "expires_on": serializers.DateField(required=False),
                "document_number": serializers.CharField(required=False),
            },
        )
    },
    responses={201: CreatedSerializer, **errors(400, 401, 404, 422)},
    summary="Upload a document for a requirement (JPEG, PNG or PDF; checked by content)",
)
@api_view(["POST"])
@parser_classes([MultiPartParser])
def document_upload(request, requirement_id: int):
    requirement, item = _requirement(request, requirement_id)
    if requirement.kind != Requirement.DOCUMENT:
        raise ApiError(
            "This requirement is not a document: see its kind.",
            code="wrong_kind",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    _refuse_blocked_country(request.user)
    files = request.FILES.copy()
    if "page" in files:
        files.setlist("pages", files.getlist("page"))
        del files["page"]
    form = DocumentForm(request.POST, files, requirement=requirement)
    if not form.is_valid():
        raise _form_errors(form, rename=FORM_TO_API)
    try:
        services.submission_document_create(
            user=request.user,
            requirement=requirement,
            details=form.details(),
            files=form.files_for_service(),
        )
    except DocumentRejected as exc:
        side = API_SIDE_FIELDS.get(getattr(exc, "side", ""), "")
        extra = {"errors": {side: [str(exc)]}} if side else {}
        raise ApiError(
            str(exc),
            code="document_rejected",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            **extra,
        ) from exc
    except KycError as exc:
        raise ApiError(
            str(exc), code="refused", status_code=status.HTTP_422_UNPROCESSABLE_ENTITY
        ) from exc
    return _created(requirement, request)


class AnswersRequest(serializers.Serializer):
    answers = serializers.DictField(
        help_text="By question name: a string (text, number, date YYYY-MM-DD, a choice's "
        "value), a list of choice values (several choices), true/false (checkbox)."
    )


def _answer_data(questions, answers: dict) -> dict:
    """The JSON answers as a form's data, refusing values of the wrong shape
    (a list for a date, an object anywhere) with the question named."""
    known = {question.name: question for question in questions}
    unknown = sorted(set(answers) - set(known))
    if unknown:
        raise ApiError(
            f"answers.{unknown[0]}: not a question of this questionnaire.",
            code="invalid",
            errors={
                "answers": {name: ["Not a question of this questionnaire."] for name in unknown}
            },
        )
    data: dict = {}
    problems: dict[str, list[str]] = {}
    for name, value in answers.items():
        kind = known[name].kind
        if kind == "checkbox":
            if not isinstance(value, bool):
                problems[name] = ["Answer true or false."]
            elif value:
                data[name] = "on"
        elif kind == "multiple_choice":
            if not isinstance(value, list) or not all(
                isinstance(v, str | int) and not isinstance(v, bool) for v in value
            ):
                problems[name] = ["Answer with a list of choice values."]
            else:
                data[name] = [str(v) for v in value]
        elif value is None:
            continue
        elif (
            isinstance(value, str)
            or (isinstance(value, int | float) and not isinstance(value, bool) and kind == "number")
            or isinstance(value, int)
            and not isinstance(value, bool)
            and kind == "choice"
        ):
            data[name] = str(value)
        else:
            problems[name] = ["Answer with a string."]
    if problems:
        name, messages = next(iter(problems.items()))
        raise ApiError(
            f"answers.{name}: {messages[0]}", code="invalid", errors={"answers": problems}
        )
    return data


@extend_schema(
    request=AnswersRequest,
    responses={201: CreatedSerializer, **errors(400, 401, 404, 422)},
    summary="Answer a questionnaire (a scored one is decided at once)",
    description=(
        "A scored questionnaire below its pass mark is rejected at once (`status` rejected, "
        "`retake_at` says when it may be taken again); at or above it, approved at once when "
        "the questionnaire says so; otherwise pending review."
    ),
    examples=[
        OpenApiExample(
            "The appropriateness test",
            value={
                "answers": {
                    "experience": "1_3",
                    "leverage": "100",
                    "stop_out": "closed",
                    "risk_understood": True,
                }
            },
            request_only=True,
        )
    ],
)
@api_view(["POST"])
@parser_classes([JSONParser])
def answers_submit(request, requirement_id: int):
    requirement, item = _requirement(request, requirement_id)
    if requirement.kind != Requirement.QUESTIONNAIRE:
        raise ApiError(
            "This requirement is not a questionnaire: see its kind.",
            code="wrong_kind",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    questionnaire = requirement.questionnaire
    if questionnaire is None or not questionnaire.is_active:
        raise ApiError(
            "This questionnaire is not available.",
            code="refused",
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    body = AnswersRequest(data=request.data)
    body.is_valid(raise_exception=True)
    _refuse_blocked_country(request.user)
    questions = list(questionnaire.questions.order_by("order", "id"))
    data = _answer_data(questions, body.validated_data["answers"])
    form = QuestionnaireForm(data, questions=questions)
    if not form.is_valid():
        raise _form_errors(form, under="answers")
    try:
        services.submission_questionnaire_create(
            user=request.user, requirement=requirement, answers=form.cleaned_data
        )
    except KycError as exc:
        raise ApiError(
            str(exc), code="refused", status_code=status.HTTP_422_UNPROCESSABLE_ENTITY
        ) from exc
    return _created(requirement, request)
