import pytest

from backoffice.models import Brand
from backoffice.navigation import NavItem, items, register

pytestmark = pytest.mark.django_db


def test_brand_colours_and_name_reach_the_room(client, trader, django_capture_on_commit_callbacks):
    client.force_login(trader)
    client.get("/room/")  # caches the default brand
    with django_capture_on_commit_callbacks(execute=True):
        Brand.objects.update_or_create(
            pk=1, defaults={"name": "Acme Markets", "primary_color": "#aa0011"}
        )
        Brand.objects.get(pk=1).save()
    page = client.get("/room/").content.decode()
    assert "--brand:#aa0011" in page
    assert "Acme Markets" in page


def test_brand_colour_must_be_a_hex_colour():
    from django.core.exceptions import ValidationError

    brand = Brand(name="X", primary_color="red;}</style><script>")
    with pytest.raises(ValidationError):
        brand.full_clean()


def test_navigation_lists_only_registered_sections_in_order(monkeypatch):
    from backoffice import navigation

    monkeypatch.setattr(navigation, "_items", dict(navigation._items))
    register(NavItem("partner", "zz-test", "Test section", "room:dashboard", order=999))
    assert [i.key for i in items("partner")][-1] == "zz-test"
    room_keys = [i.key for i in items("room")]
    assert room_keys[:1] == ["dashboard"] and "security" in room_keys
    from django.urls import reverse

    for item in items("room"):  # sections appear as they land: no dead links
        reverse(item.url_name)
