"""URLconf of the benchmark server: the back office plus a bare baseline view.

Used only when the server runs with ``ROOT_URLCONF=tests.benchmarks.urls``
(tests/benchmarks/bench_dashboard.py does); production never loads it.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.urls import include, path

# A small page, compiled once: the cost of a bare Django view is the request
# cycle (the same middleware as every page), one query and one render.
BARE_TEMPLATE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{{ title }}</title></head>
<body>
<h1>{{ title }}</h1>
<p>User #1 {% if found %}exists{% else %}does not exist{% endif %}.</p>
<ul>{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul>
</body>
</html>
"""
)


def bare(request: HttpRequest) -> HttpResponse:
    """Exactly one query (plus whatever the shared middleware does)."""
    found = get_user_model().objects.filter(pk=1).exists()
    html = BARE_TEMPLATE.render(
        Context({"title": "Bare view", "found": found, "items": ["one", "two", "three"]})
    )
    return HttpResponse(html)


urlpatterns = [
    path("_bench/bare", bare, name="bench_bare"),
    path("", include("backoffice.urls")),
]
