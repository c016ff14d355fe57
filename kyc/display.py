"""What the verification pages and the API show of a client's level and
items: limits with their usage, what a level gives, each item's status and
action. Shared by the room's views and the API, which only render it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from backoffice.money import to_minor

from . import selectors
from .models import Level, Requirement, Submission
from .selectors import RequirementStatus

# --- what the pages show ------------------------------------------------------------


def _money(amount: Decimal, level: Level) -> str:
    from payments.templatetags.payments import format_amount

    currency = level.limits_currency
    return format_amount(to_minor(amount, currency.exponent, rounding=ROUND_HALF_UP), currency)


@dataclass(frozen=True)
class LimitLine:
    """One limit of a level (per day or per month) and how much of it is used."""

    period: str
    limit: Decimal | None
    used: Decimal | None
    level: Level

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    @property
    def percent(self) -> int:
        if not self.limit or self.used is None:
            return 0
        return min(100, int(self.used * 100 / self.limit))

    @property
    def limit_text(self) -> str:
        return "No limit" if self.limit is None else _money(self.limit, self.level)

    @property
    def used_text(self) -> str:
        return "" if self.used is None else _money(self.used, self.level)

    @property
    def left_text(self) -> str:
        if self.limit is None or self.used is None:
            return ""
        return _money(max(self.limit - self.used, Decimal(0)), self.level)


@dataclass
class LimitGroup:
    title: str
    allowed: bool
    lines: list[LimitLine] = field(default_factory=list)
    # Why the usage cannot be shown (no exchange rate just now).
    problem: str = ""


def limit_group(user, level: Level, *, title: str, allowed: bool, kind: str) -> LimitGroup:
    """The level's daily and monthly limits for deposits or withdrawals, with
    the usage read only when there is a limit to compare it with."""
    from payments.exceptions import LedgerError

    daily = getattr(level, f"{kind}_daily_limit")
    monthly = getattr(level, f"{kind}_monthly_limit")
    group = LimitGroup(title=title, allowed=allowed)
    if not allowed:
        return group
    usage = None
    if daily is not None or monthly is not None:
        usage_for = selectors.deposit_usage if kind == "deposit" else selectors.withdrawal_usage
        try:
            usage = usage_for(user, level.limits_currency_id)
        except LedgerError as exc:
            group.problem = f"What you used cannot be shown just now: {exc}"
    group.lines = [
        LimitLine("Today", daily, usage.day if usage else None, level),
        LimitLine("This month", monthly, usage.month if usage else None, level),
    ]
    return group


def level_gives(level: Level) -> list[str]:
    """What a level allows, in a few short lines for the trader."""

    def limits(daily, monthly) -> str:
        if daily is None and monthly is None:
            return "with no limit"
        parts = []
        if daily is not None:
            parts.append(f"{_money(daily, level)} a day")
        if monthly is not None:
            parts.append(f"{_money(monthly, level)} a month")
        return "up to " + " and ".join(parts)

    lines = [f"Deposits {limits(level.deposit_daily_limit, level.deposit_monthly_limit)}"]
    if level.allows_withdrawals:
        lines.append(
            "Withdrawals " + limits(level.withdrawal_daily_limit, level.withdrawal_monthly_limit)
        )
    else:
        lines.append("No withdrawals")
    lines.append("Live trading accounts" if level.allows_live_accounts else "Demo accounts only")
    if not level.allows_transfers:
        lines.append("No internal transfers")
    return lines


@dataclass
class Item:
    """A requirement on the page: its status and what the trader can do."""

    state: RequirementStatus
    action: str = ""
    url: str = ""
    # The action is a POST (a provider's check), not a link.
    post: bool = False
    valid_until: date | None = None
    renewal_due: bool = False
    retake_at: datetime | None = None

    @property
    def requirement(self) -> Requirement:
        return self.state.requirement

    @property
    def submission(self) -> Submission | None:
        return self.state.submission

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def status_label(self) -> str:
        return self.state.status_label

    @property
    def reason(self) -> str:
        submission = self.submission
        if submission is None or self.status not in (Submission.REJECTED, Submission.RESUBMIT):
            return ""
        return submission.reason.text if submission.reason_id else ""

    @property
    def note(self) -> str:
        submission = self.submission
        if submission is None or self.status not in (Submission.REJECTED, Submission.RESUBMIT):
            return ""
        return submission.reason_note


def provider_start_url(requirement: Requirement) -> str:
    try:
        return reverse("kyc:provider_start", args=[requirement.pk])
    except NoReverseMatch:  # no provider view installed: nothing to press
        return ""


def _valid_until(submission: Submission | None) -> date | None:
    """The last day an approval holds (it lapses at the start of the next)."""
    if submission is None or submission.expires_at is None:
        return None
    return timezone.localtime(submission.expires_at).date() - timedelta(days=1)


def _action(state: RequirementStatus) -> tuple[str, str, bool]:
    requirement, status = state.requirement, state.status
    if requirement.kind == Requirement.PROVIDER:
        url = provider_start_url(requirement) if requirement.provider_id else ""
        provider = requirement.provider.name if requirement.provider_id else "the provider"
        label = "Start again" if status != Submission.MISSING else "Start the check"
        return (f"{label} with {provider}" if url else ""), url, True
    url = reverse("kyc:requirement", args=[requirement.pk])
    if status == Submission.APPROVED:
        return "Renew", url, False
    if requirement.kind == Requirement.QUESTIONNAIRE:
        return (
            ("Answer the questions" if status == Submission.MISSING else "Answer again"),
            url,
            False,
        )
    return ("Upload" if status == Submission.MISSING else "Upload again"), url, False


def item_for(state: RequirementStatus) -> Item:
    item = Item(state=state, valid_until=_valid_until(state.submission))
    submission = state.submission
    if state.status == Submission.APPROVED and state.can_submit:
        item.renewal_due = True
    if (
        state.status == Submission.REJECTED
        and state.requirement.kind == Requirement.QUESTIONNAIRE
        and submission is not None
        and submission.decided_at
        and not state.can_submit
    ):
        item.retake_at = submission.decided_at + selectors.QUESTIONNAIRE_RETAKE_AFTER
    if state.can_submit:
        item.action, item.url, item.post = _action(state)
    return item


@dataclass
class LevelView:
    level: Level
    items: list[Item]
    gives: list[str]

    @property
    def done(self) -> int:
        return sum(item.status == Submission.APPROVED for item in self.items)


def country_name(code: str) -> str:
    from django_countries import countries

    return countries.name(code) if code else ""
