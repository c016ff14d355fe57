"""Reads for the partner's Links and Materials pages: a partner's own links
(access getter), the funnel per link, marketing materials with the link
filled in."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q
from django.http import Http404

from kyc.models import ClientKyc
from payments.models import Deposit

from ..models import Material, Partner, Referral, ReferralLink


def link_get_for_partner(*, partner: Partner, link_id: int | str) -> ReferralLink:
    """The partner's own link, or 404 (another partner's link too)."""
    try:
        return ReferralLink.objects.select_related("registration_flow").get(
            pk=int(link_id), partner=partner
        )
    except (TypeError, ValueError, ReferralLink.DoesNotExist):
        raise Http404("No such link") from None


@dataclass(frozen=True)
class LinkFunnel:
    link: ReferralLink
    clicks: int
    signups: int
    verified: int
    deposited: int

    @property
    def conversion(self) -> str:
        """Sign-ups per click, as a percentage for the table."""
        if not self.clicks:
            return "–"
        return f"{100 * self.signups / self.clicks:.1f} %"


def links_with_funnel(partner: Partner) -> list[LinkFunnel]:
    """The partner's links, active ones first, newest first, each with its funnel: clicks,
    sign-ups (clients attributed through it), verified (those at KYC level 1
    or more), first deposits (those with a completed deposit). Two queries,
    however many links and clients."""
    links = list(
        ReferralLink.objects.filter(partner=partner)
        .select_related("registration_flow")
        .order_by("-is_active", "-created_at", "-id")
    )
    if not links:
        return []
    verified = Exists(ClientKyc.objects.filter(user_id=OuterRef("client_id"), level__number__gte=1))
    deposited = Exists(
        Deposit.objects.filter(user_id=OuterRef("client_id"), status=Deposit.COMPLETED)
    )
    rows = (
        Referral.objects.filter(link__partner=partner)
        .values("link_id")
        .annotate(
            signups=Count("client_id", distinct=True),
            verified=Count("client_id", filter=Q(verified), distinct=True),
            deposited=Count("client_id", filter=Q(deposited), distinct=True),
        )
        .order_by()
    )
    stats = {row["link_id"]: row for row in rows}
    empty = {"signups": 0, "verified": 0, "deposited": 0}
    return [
        LinkFunnel(
            link=link,
            clicks=link.clicks,
            signups=stats.get(link.pk, empty)["signups"],
            verified=stats.get(link.pk, empty)["verified"],
            deposited=stats.get(link.pk, empty)["deposited"],
        )
        for link in links
    ]


def funnel_totals(funnels: list[LinkFunnel]) -> dict[str, int]:
    return {
        "clicks": sum(f.clicks for f in funnels),
        "signups": sum(f.signups for f in funnels),
        "verified": sum(f.verified for f in funnels),
        "deposited": sum(f.deposited for f in funnels),
    }


def active_links(partner: Partner) -> list[ReferralLink]:
    """The partner's active links, client links first, newest first."""
    links = list(ReferralLink.objects.filter(partner=partner, is_active=True))
    return sorted(links, key=lambda link: link.kind != ReferralLink.CLIENT)


@dataclass(frozen=True)
class MaterialCard:
    material: Material
    snippet: str  # plain text to paste: HTML for a banner, the text for a text
    image_url: str = ""


def materials_for(*, link_url: str, media_url) -> list[MaterialCard]:
    """Active materials with ``link_url`` filled in. ``media_url`` makes a
    stored file's URL absolute (the page's ``request.build_absolute_uri``).
    The snippets are plain text: the template escapes them."""
    from django.utils.html import escape

    cards = []
    for material in Material.objects.filter(is_active=True):
        if material.kind == Material.BANNER:
            if not material.image:
                continue
            image_url = media_url(material.image.url)
            size = ""
            if material.width and material.height:
                size = f' width="{material.width}" height="{material.height}"'
            snippet = (
                f'<a href="{escape(link_url)}"><img src="{escape(image_url)}"{size} '
                f'alt="{escape(material.title)}"></a>'
            )
            cards.append(MaterialCard(material=material, snippet=snippet, image_url=image_url))
        else:
            cards.append(
                MaterialCard(material=material, snippet=material.text.replace("{link}", link_url))
            )
    return cards


def link_flow_for_code(code: str) -> int | None:
    """The registration flow chosen for an active link's code (accounts asks,
    through ``accounts.registration.CAMPAIGN_FLOW_RESOLVERS``)."""
    return (
        ReferralLink.objects.filter(code=code, is_active=True)
        .values_list("registration_flow_id", flat=True)
        .first()
    )
