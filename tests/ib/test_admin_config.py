"""The IB programme's configuration in the admin: the settings singleton,
marketing materials (banners checked by decoding them; hostile files
refused), and the read-only lists of referral links and referrals (counts
annotated, query counts constant, Sales scoped)."""

from __future__ import annotations

import html as html_lib
import io
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.roles import ADMINISTRATOR, FINANCE, SALES
from ib.models import Material, Referral, ReferralLink, Settings
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory
from tests.ib.factories import make_partner, make_plan, refer

pytestmark = pytest.mark.django_db

MATERIAL_ADD = "/admin/ib/material/add/"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def finance():
    return signed_in_with_code(StaffFactory(roles=[FINANCE]))


def text(response) -> str:
    return html_lib.unescape(response.content.decode())


def picture(fmt: str = "PNG", size=(468, 60), name: str = "banner.png") -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, fmt)
    return SimpleUploadedFile(name, out.getvalue(), f"image/{fmt.lower()}")


def banner_data(upload, **overrides) -> dict:
    data = {
        "kind": "banner",
        "title": "Spring banner",
        "image": upload,
        "text": "",
        "language": "en",
        "is_active": "on",
        "display_order": "100",
    }
    data.update(overrides)
    return data


# --- settings --------------------------------------------------------------------------------


def test_settings_are_one_row_the_list_opens_it(finance):
    row = Settings.objects.get()
    response = finance.get("/admin/ib/settings/")
    assert response["Location"] == f"/admin/ib/settings/{row.pk}/change/"
    assert finance.get("/admin/ib/settings/add/").status_code == 403
    assert finance.post(f"/admin/ib/settings/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    plan = make_plan(name="Default")
    make_plan(name="Retired", is_active=False)
    page = text(finance.get(f"/admin/ib/settings/{row.pk}/change/"))
    assert "Default" in page and "Retired" not in page
    response = finance.post(
        f"/admin/ib/settings/{row.pk}/change/",
        {"attribution": "last", "cookie_days": "45", "default_plan": plan.pk},
    )
    assert response["Location"] == f"/admin/ib/settings/{row.pk}/change/"
    row.refresh_from_db()
    assert (row.attribution, row.cookie_days, row.default_plan) == ("last", 45, plan)
    assert Settings.objects.count() == 1


def test_settings_refuse_a_cookie_of_zero_days(finance):
    row = Settings.objects.get()
    response = finance.post(
        f"/admin/ib/settings/{row.pk}/change/", {"attribution": "first", "cookie_days": "0"}
    )
    assert response.status_code == 200
    assert Settings.objects.get().cookie_days == 30


# --- materials -------------------------------------------------------------------------------


def test_a_banner_is_stored_under_our_own_name_with_its_size(finance, media_root):
    response = finance.post(MATERIAL_ADD, banner_data(picture(name="../../evil.php.png")))
    assert response.status_code == 302
    material = Material.objects.get()
    assert (material.width, material.height) == (468, 60)
    stored = os.path.basename(material.image.name)
    assert stored.endswith(".png") and "evil" not in stored and "php" not in stored
    assert (media_root / material.image.name).is_file()
    page = text(finance.get(f"/admin/ib/material/{material.pk}/change/"))
    assert 'id="material-preview"' in page and "/r/EXAMPLE/" in page and "468×60" in page


def test_a_picture_named_php_is_refused(finance):
    upload = picture(fmt="JPEG", name="shell.php")
    upload.content_type = "application/x-php"
    response = finance.post(MATERIAL_ADD, banner_data(upload))
    assert response.status_code == 200  # the name alone is refused
    assert not Material.objects.exists()


def test_a_php_file_renamed_png_is_refused(finance, media_root):
    payload = b"<?php system($_GET['c']); ?>\n" * 20
    upload = SimpleUploadedFile("banner.png", payload, "image/png")
    response = finance.post(MATERIAL_ADD, banner_data(upload))
    assert response.status_code == 200
    assert "valid image" in text(response) or "not a PNG, JPEG, GIF or WebP" in text(response)
    assert not Material.objects.exists()
    assert not media_root.exists() or not any(media_root.rglob("*.*"))


def test_an_oversized_banner_is_refused(finance):
    noise = Image.frombytes("RGB", (1100, 1100), os.urandom(1100 * 1100 * 3))
    out = io.BytesIO()
    noise.save(out, "PNG")
    assert out.tell() > 2 * 1024 * 1024
    upload = SimpleUploadedFile("big.png", out.getvalue(), "image/png")
    response = finance.post(MATERIAL_ADD, banner_data(upload))
    assert response.status_code == 200
    assert "at most 2 MB" in text(response)
    assert not Material.objects.exists()


def test_a_banner_too_large_in_pixels_and_other_formats_are_refused(finance):
    response = finance.post(MATERIAL_ADD, banner_data(picture(size=(4200, 10), name="w.png")))
    assert "at most 4000 a side" in text(response)
    response = finance.post(MATERIAL_ADD, banner_data(picture(fmt="BMP", name="b.bmp")))
    assert response.status_code == 200
    svg = SimpleUploadedFile(
        "x.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    )
    response = finance.post(MATERIAL_ADD, banner_data(svg))
    assert response.status_code == 200
    truncated = picture(fmt="JPEG", size=(400, 300), name="t.jpg")
    cut = SimpleUploadedFile("t.jpg", truncated.read()[:-600], "image/jpeg")
    response = finance.post(MATERIAL_ADD, banner_data(cut))
    assert response.status_code == 200
    assert not Material.objects.exists()


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "WEBP"])
def test_jpeg_gif_and_webp_banners_are_accepted(finance, fmt):
    response = finance.post(MATERIAL_ADD, banner_data(picture(fmt=fmt, name=f"b.{fmt.lower()}")))
    assert response.status_code == 302
    extension = {"JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp"}[fmt]
    assert Material.objects.get().image.name.endswith(extension)


def test_a_text_needs_the_link_placeholder(finance):
    data = {
        "kind": "text",
        "title": "Tweet",
        "text": "Trade with us!",
        "language": "en",
        "display_order": "100",
    }
    response = finance.post(MATERIAL_ADD, data)
    assert "Put {link} where the partner's link goes" in text(response)
    assert not Material.objects.exists()
    data["text"] = "Trade with us: {link}"
    assert finance.post(MATERIAL_ADD, data).status_code == 302
    material = Material.objects.get()
    page = text(finance.get(f"/admin/ib/material/{material.pk}/change/"))
    assert "Trade with us: " in page and "/r/EXAMPLE/" in page


def test_a_banner_needs_its_picture(finance):
    response = finance.post(MATERIAL_ADD, banner_data(None) | {"image": ""})
    assert "A banner needs its picture." in text(response)
    assert not Material.objects.exists()


# --- referral links and referrals -------------------------------------------------------------


def _link(partner, code: str) -> ReferralLink:
    return ReferralLink.objects.create(partner=partner, code=code, name=f"campaign {code}")


def test_links_show_sign_ups_with_constant_queries(django_assert_max_num_queries):
    http = signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))
    partner = make_partner()
    link = _link(partner, "SPRING")
    for _ in range(3):
        Referral.objects.create(client=TraderFactory(), partner=partner, link=link, source="cookie")
    http.get("/admin/ib/referrallink/")
    with django_assert_max_num_queries(8):
        response = http.get("/admin/ib/referrallink/")
    assert "SPRING" in text(response)
    assert '<td class="field-signups">3</td>' in response.content.decode()
    for index in range(10):
        _link(make_partner(), f"CODE{index}")
    with django_assert_max_num_queries(8):
        assert http.get("/admin/ib/referrallink/").status_code == 200
    assert http.get(f"/admin/ib/referrallink/{link.pk}/change/").status_code == 200
    assert http.post(f"/admin/ib/referrallink/{link.pk}/change/", {}).status_code == 403


def test_referrals_are_read_only_and_scoped_for_sales(django_assert_max_num_queries):
    sales_staff = StaffFactory(roles=[SALES])
    sales = signed_in_with_code(sales_staff)
    partner = make_partner()
    mine = TraderFactory(email="mine@example.com", profile__manager=sales_staff)
    other = TraderFactory(email="other@example.com")
    refer(mine, partner)
    theirs = refer(other, partner)
    sales.get("/admin/ib/referral/")
    with django_assert_max_num_queries(7):
        body = text(sales.get("/admin/ib/referral/"))
    assert "mine@example.com" in body and "other@example.com" not in body
    assert sales.get(f"/admin/ib/referral/{theirs.pk}/change/").status_code == 404
    assert sales.get("/admin/ib/referral/add/").status_code == 403


def test_sales_see_only_links_of_their_own_partners():
    sales_staff = StaffFactory(roles=[SALES])
    sales = signed_in_with_code(sales_staff)
    mine = make_partner(user=TraderFactory(profile__manager=sales_staff))
    _link(mine, "MINE")
    theirs = _link(make_partner(), "THEIRS")
    body = text(sales.get("/admin/ib/referrallink/"))
    assert "MINE" in body and "THEIRS" not in body
    assert sales.get(f"/admin/ib/referrallink/{theirs.pk}/change/").status_code == 404
