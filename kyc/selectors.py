"""Reads of the KYC app: a client's level and what it allows, what the next
level needs, the status of each requirement, usage of the limits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Prefetch, Q
from django.utils import timezone

from accounts.selectors import client_country

from .models import ClientKyc, CountryRule, Level, Requirement, Submission

# --- configuration ---------------------------------------------------------------


def levels_active() -> list[Level]:
    return list(Level.objects.filter(is_active=True).select_related("limits_currency"))


def level_lowest() -> Level:
    level = Level.objects.filter(is_active=True).order_by("number").first()
    if level is None:
        level = Level.objects.order_by("number").first()
    if level is None:
        raise Level.DoesNotExist("No KYC level is configured.")
    return level


def country_rule_for(country: str) -> CountryRule | None:
    if not country:
        return None
    return CountryRule.objects.filter(country=country).first()


def country_blocked(country: str) -> bool:
    return bool(country) and CountryRule.objects.filter(country=country, blocked=True).exists()


def requirements_for(*, level: Level, rule: CountryRule | None) -> list[Requirement]:
    """The level's active requirements that apply to a client under ``rule``:
    all of them, except those kept for countries whose rule names them."""
    requirements = list(level.requirements.filter(is_active=True).order_by("order", "id"))
    extra = set()
    if rule is not None and any(r.only_for_country_rules for r in requirements):
        extra = set(rule.extra_requirements.values_list("id", flat=True))
    return [r for r in requirements if not r.only_for_country_rules or r.pk in extra]


# --- a client's state --------------------------------------------------------------


def kyc_for_user(user, *, with_currency: bool = False) -> ClientKyc | None:
    """The client's KYC row with its level (the limits currency's code is
    ``level.limits_currency_id``; ``with_currency`` loads the currency too, for
    pages that show its symbol); one primary-key lookup, no ordering."""
    related = "level__limits_currency" if with_currency else "level"
    rows = ClientKyc.objects.select_related(related).filter(pk=user.pk)[:1]
    return next(iter(rows), None)


def kyc_level_for_user(user) -> Level:
    """The client's level (the lowest level when they have not started)."""
    kyc = kyc_for_user(user)
    return kyc.level if kyc is not None else level_lowest()


def current_submissions(user) -> dict[int, Submission]:
    """The current submission per requirement id."""
    rows = Submission.objects.filter(user=user, is_current=True).select_related("reason")
    return {s.requirement_id: s for s in rows}


def effective_status(submission: Submission | None, *, now: datetime | None = None) -> str:
    """missing, pending, approved, rejected, resubmit or expired; an approval
    past its expiry reads as expired before the sweep marks it."""
    if submission is None:
        return Submission.MISSING
    now = now or timezone.now()
    if (
        submission.status == Submission.APPROVED
        and submission.expires_at is not None
        and submission.expires_at <= now
    ):
        return Submission.EXPIRED
    return submission.status


def satisfied(submission: Submission | None, *, now: datetime | None = None) -> bool:
    return effective_status(submission, now=now) == Submission.APPROVED


@dataclass
class RequirementStatus:
    requirement: Requirement
    submission: Submission | None
    status: str
    can_submit: bool
    # Why the client cannot submit now (pending review, a final rejection...).
    blocked_reason: str = ""

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]


STATUS_LABELS = {
    Submission.MISSING: "missing",
    Submission.PENDING: "pending review",
    Submission.APPROVED: "approved",
    Submission.REJECTED: "rejected",
    Submission.RESUBMIT: "please resubmit",
    Submission.EXPIRED: "expired",
}

# A failed questionnaire may be taken again this long after the decision.
QUESTIONNAIRE_RETAKE_AFTER = timedelta(hours=24)

# An approval this close to its expiry may be renewed by a new submission.
RENEWAL_WINDOW_DAYS = 30


def submission_allowed(submission: Submission | None, *, now: datetime | None = None) -> str:
    """ "" when the client may submit for this requirement now, else why not."""
    now = now or timezone.now()
    status = effective_status(submission, now=now)
    if status in (Submission.MISSING, Submission.RESUBMIT, Submission.EXPIRED):
        return ""
    if status == Submission.PENDING:
        return "It is being reviewed."
    if status == Submission.APPROVED:
        if submission.expires_at and (submission.expires_at - now).days < RENEWAL_WINDOW_DAYS:
            return ""
        return "It is approved."
    # Rejected: a failed questionnaire may be retaken the next day; a rejected
    # document is final (support can ask for a new one).
    if submission.requirement.kind == Requirement.QUESTIONNAIRE:
        if submission.decided_at and now - submission.decided_at >= QUESTIONNAIRE_RETAKE_AFTER:
            return ""
        return "You can take the test again 24 hours after your last attempt."
    return "It was rejected. Contact support if you think this is a mistake."


def _status_of(
    requirement: Requirement, submission: Submission | None, now: datetime
) -> RequirementStatus:
    if submission is not None:
        submission.requirement = requirement
    blocked = submission_allowed(submission, now=now)
    return RequirementStatus(
        requirement=requirement,
        submission=submission,
        status=effective_status(submission, now=now),
        can_submit=not blocked,
        blocked_reason=blocked,
    )


def requirement_status(*, user, requirement: Requirement) -> RequirementStatus:
    """Where the client stands on one requirement, and whether they may
    submit for it now."""
    submission = current_submissions(user).get(requirement.pk)
    return _status_of(requirement, submission, timezone.now())


@dataclass
class LevelProgress:
    level: Level
    items: list[RequirementStatus]

    @property
    def complete(self) -> bool:
        return all(item.status == Submission.APPROVED for item in self.items)


@dataclass
class VerificationOverview:
    kyc: ClientKyc | None
    level: Level
    levels: list[Level]
    # The requirements of every level above the client's, in order.
    upcoming: list[LevelProgress] = field(default_factory=list)
    # Requirements of levels the client holds (renewals, expiries).
    held: list[RequirementStatus] = field(default_factory=list)
    country_blocked: bool = False

    @property
    def next_level(self) -> Level | None:
        return self.upcoming[0].level if self.upcoming else None


def verification_overview(user) -> VerificationOverview:
    """Everything the verification page shows, in a fixed number of queries."""
    now = timezone.now()
    kyc = kyc_for_user(user, with_currency=True)
    country = client_country(user=user)
    rule = country_rule_for(country)
    extra = set(rule.extra_requirements.values_list("id", flat=True)) if rule else set()
    levels = list(
        Level.objects.filter(is_active=True)
        .select_related("limits_currency")
        .prefetch_related(
            Prefetch(
                "requirements",
                queryset=Requirement.objects.filter(is_active=True)
                .select_related("questionnaire", "provider")
                .order_by("order", "id"),
            )
        )
        .order_by("number")
    )
    level = kyc.level if kyc is not None else (levels[0] if levels else level_lowest())
    submissions = current_submissions(user)
    overview = VerificationOverview(
        kyc=kyc, level=level, levels=levels, country_blocked=bool(rule and rule.blocked)
    )
    for lvl in levels:
        items = []
        for requirement in lvl.requirements.all():
            if requirement.only_for_country_rules and requirement.pk not in extra:
                continue
            items.append(_status_of(requirement, submissions.get(requirement.pk), now))
        if lvl.number <= level.number:
            overview.held.extend(items)
        else:
            overview.upcoming.append(LevelProgress(level=lvl, items=items))
    return overview


def requirement_get_for_user(*, user, requirement_id: int) -> Requirement:
    """An active requirement that applies to ``user`` (404 otherwise)."""
    from django.http import Http404

    requirement = (
        Requirement.objects.filter(pk=requirement_id, is_active=True, level__is_active=True)
        .select_related("level", "questionnaire", "provider")
        .first()
    )
    if requirement is None:
        raise Http404("No such requirement.")
    if requirement.only_for_country_rules:
        rule = country_rule_for(client_country(user=user))
        if rule is None or not rule.extra_requirements.filter(pk=requirement.pk).exists():
            raise Http404("No such requirement.")
    return requirement


def submission_get_for_user(*, user, submission_id: int) -> Submission:
    from django.http import Http404

    submission = (
        Submission.objects.filter(pk=submission_id, user=user)
        .select_related("requirement__level", "reason")
        .first()
    )
    if submission is None:
        raise Http404("No such submission.")
    return submission


# --- limits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Amounts used in the limits' currency: today and this month."""

    currency: str
    day: Decimal
    month: Decimal


def period_starts(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The start of today and of this month in the broker's time zone: limits
    reset at midnight and on the first, as a client reads "per day"."""
    local = timezone.localtime(now or timezone.now())
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)


# Limits convert amounts at a rate read at most this many seconds ago: the
# check runs on every deposit and withdrawal, rates themselves change only
# every few minutes (RATES_REFRESH_INTERVAL), and a limit is not a price. Kept
# in this process's memory: a round trip to a shared cache would cost as much
# as the rate's own query.
LIMIT_RATE_CACHE_SECONDS = 60
_rate_memo: dict[tuple[str, str], tuple[Decimal, float]] = {}


def rate_memo_clear() -> None:
    _rate_memo.clear()


def rate_into(code: str, currency: str, rates: dict[str, Decimal] | None = None) -> Decimal:
    """The rate from ``code`` to ``currency`` for a limit: from ``rates`` (the
    caller's cache for one decision), else this process's memo of the last
    minute, else the rates selector. A missing or stale rate raises
    ``RateUnavailable`` and is not remembered."""
    from payments.selectors.rates import rate_for

    if code == currency:
        return Decimal(1)
    if rates is not None and code in rates:
        return rates[code]
    now = time.monotonic()
    memo = _rate_memo.get((code, currency))
    if memo is not None and memo[1] > now:
        rate = memo[0]
    else:
        rate = rate_for(code, currency).rate
        _rate_memo[(code, currency)] = (rate, now + LIMIT_RATE_CACHE_SECONDS)
    if rates is not None:
        rates[code] = rate
    return rate


def _convert(
    totals: list[tuple[str, Decimal, Decimal]], currency: str, rates: dict[str, Decimal] | None
) -> Usage:
    day = month = Decimal(0)
    for code, day_amount, month_amount in totals:
        rate = rate_into(code, currency, rates)
        day += day_amount * rate
        month += month_amount * rate
    return Usage(currency, day, month)


def deposit_usage(
    user, currency: str, *, now: datetime | None = None, rates: dict[str, Decimal] | None = None
) -> Usage:
    """Deposits made today and this month, in ``currency``: completed ones,
    and those still open for less than ``KYC_OPEN_DEPOSIT_HOURS`` (an
    abandoned checkout stops holding the limit after that)."""
    from django.conf import settings

    from payments.selectors.deposits import deposit_totals_since

    day, month = period_starts(now)
    open_since = (now or timezone.now()) - timedelta(hours=settings.KYC_OPEN_DEPOSIT_HOURS)
    totals = deposit_totals_since(user=user, day=day, month=month, open_since=open_since)
    return _convert(totals, currency, rates)


def withdrawal_usage(
    user, currency: str, *, now: datetime | None = None, rates: dict[str, Decimal] | None = None
) -> Usage:
    """Withdrawals requested today and this month (not rejected or cancelled)."""
    from payments.selectors.withdrawals import withdrawal_totals_since

    day, month = period_starts(now)
    return _convert(withdrawal_totals_since(user=user, day=day, month=month), currency, rates)


# --- the review queue ----------------------------------------------------------------


def review_queue(
    *, country: str = "", level: int | None = None, risk: str = "", requirement_kind: str = ""
):
    """Pending submissions, oldest first, with what the queue shows."""
    qs = Submission.objects.filter(status=Submission.PENDING).select_related(
        "user", "requirement__level", "user__kyc"
    )
    if country:
        qs = qs.filter(user__profile__country=country)
    if level is not None:
        qs = qs.filter(requirement__level__number=level)
    if risk:
        qs = qs.filter(user__kyc__risk=risk)
    if requirement_kind:
        qs = qs.filter(requirement__kind=requirement_kind)
    return qs.order_by("submitted_at", "id")


def submissions_due_to_expire(now: datetime | None = None):
    now = now or timezone.now()
    return Submission.objects.filter(
        Q(status=Submission.APPROVED), expires_at__isnull=False, expires_at__lte=now
    )


# --- documents -------------------------------------------------------------------------


def document_get_for_viewer(*, viewer, document_id: int):
    """A KYC document ``viewer`` may open, or 404.

    Its owner may; staff only with ``kyc.view_kyc_document`` and a verified
    second factor (as for the admin), and only for the clients they may see
    (a sales manager: the clients assigned to them). Anyone else, another
    client or a partner (IB) included, gets the same 404 as for a document
    that does not exist, so that ids reveal nothing.
    """
    from django.http import Http404

    from accounts.selectors import clients_visible_to

    from .models import Document

    not_found = Http404("No such document.")
    if viewer is None or not viewer.is_authenticated or not viewer.is_active:
        raise not_found
    documents = Document.objects.select_related("user")
    if viewer.is_staff:
        verified = getattr(viewer, "is_verified", lambda: False)()
        if not verified or not viewer.has_perm("kyc.view_kyc_document"):
            raise not_found
        documents = documents.filter(user__in=clients_visible_to(staff=viewer))
    else:
        documents = documents.filter(user=viewer)
    document = documents.filter(pk=document_id).first()
    if document is None:
        raise not_found
    return document
