from django.http import HttpRequest

from . import navigation
from .selectors import brand_get


def branding(request: HttpRequest) -> dict:
    return {
        "brand": brand_get(),
        "room_nav": navigation.items("room"),
        "partner_nav": navigation.items("partner"),
    }
