"""Marketing materials with the partner's link filled in: banners as HTML to
paste, texts with {link}, the link picked, escaping, another partner's ids."""

from __future__ import annotations

import base64

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ib.models import Material, ReferralLink
from ib.services.referrals import referral_link_create, referral_link_deactivate
from tests.factories import TraderFactory
from tests.ib.factories import make_partner

pytestmark = pytest.mark.django_db

URL = "/partner/materials/"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def banner(title="Spring banner", **fields) -> Material:
    return Material.objects.create(
        kind=Material.BANNER,
        title=title,
        image=SimpleUploadedFile("spring.png", PNG, content_type="image/png"),
        width=468,
        height=60,
        **fields,
    )


def text(body="Open an account here: {link} (risk warning applies)", **fields) -> Material:
    return Material.objects.create(
        kind=Material.TEXT, title=fields.pop("title", "Post"), text=body, **fields
    )


def signed_in(client, partner):
    client.force_login(partner.user)
    return client


def test_without_a_link_the_partner_is_asked_to_create_one(client):
    text()
    page = signed_in(client, make_partner()).get(URL).content.decode()
    assert "Create a link first" in page and "Materials are ready for you" in page
    assert 'href="/partner/links/#new-link"' in page


def test_no_materials_yet(client):
    partner = make_partner()
    link = referral_link_create(partner=partner, name="Blog")
    page = signed_in(client, partner).get(URL).content.decode()
    assert "No materials yet" in page and f"/r/{link.code}/" in page


def test_banners_and_texts_carry_the_newest_client_link_escaped(client):
    partner = make_partner()
    older = referral_link_create(partner=partner, name="Older")
    newest = referral_link_create(partner=partner, name="Newest")
    referral_link_create(partner=partner, name="Team", kind=ReferralLink.PARTNER)  # newer still
    material = banner()
    text("Trade with us <script>alert(1)</script>: {link}")
    text("Hidden", title="Retired", is_active=False)
    page = signed_in(client, partner).get(URL).content.decode()
    url = f"http://testserver/r/{newest.code}/"
    image = f"http://testserver/media/{material.image.name}"
    snippet = f'<a href="{url}"><img src="{image}" width="468" height="60" alt="Spring banner"></a>'
    # Shown as code to copy (escaped), never as markup on the page.
    assert (
        snippet.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        in page
    )
    assert f"Trade with us &lt;script&gt;alert(1)&lt;/script&gt;: {url}" in page
    assert "<script>alert(1)" not in page
    assert "Retired" not in page
    assert f'<option value="{newest.pk}" selected>' in page
    assert f"/r/{older.code}/" not in page.split('id="materials-list"')[1]


def test_picking_another_of_the_partners_links(client):
    partner = make_partner()
    first = referral_link_create(partner=partner, name="First")
    referral_link_create(partner=partner, name="Second")
    text()
    page = signed_in(client, partner).get(URL, {"link": first.pk}).content.decode()
    assert f"Open an account here: http://testserver/r/{first.code}/" in page
    # htmx asks for the same page and takes the list from it.
    response = client.get(URL, {"link": first.pk}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'id="materials-list"' in response.content.decode()


def test_another_partners_inactive_or_garbage_link_is_404(client):
    partner = make_partner()
    mine = referral_link_create(partner=partner, name="Mine")
    theirs = referral_link_create(partner=make_partner(), name="Theirs")
    old = referral_link_create(partner=partner, name="Old")
    referral_link_deactivate(partner=partner, link=old)
    signed_in(client, partner)
    assert client.get(URL, {"link": theirs.pk}).status_code == 404
    assert client.get(URL, {"link": old.pk}).status_code == 404
    assert client.get(URL, {"link": "1 OR 1=1"}).status_code == 404
    assert client.get(URL, {"link": mine.pk}).status_code == 200


def test_only_active_partners(client):
    client.force_login(TraderFactory())
    assert client.get(URL)["Location"] == "/room/partner/"


def test_the_page_query_count(client, django_assert_num_queries):
    partner = make_partner()
    referral_link_create(partner=partner, name="Blog")
    for i in range(3):
        banner(title=f"Banner {i}")
        text(title=f"Text {i}")
    signed_in(client, partner).get(URL)
    # user, partner, links, materials
    with django_assert_num_queries(4):
        page = client.get(URL).content.decode()
    assert page.count('class="card material-card"') == 6
