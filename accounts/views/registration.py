"""Pages of the registration constructor: the sign-up page (allauth's, with
the form of the flow that applies), the public pages of legal documents, and
the room's page for accepting new versions of them."""

from __future__ import annotations

from allauth.account.views import SignupView as AllauthSignupView
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods

from .. import registration
from ..adapter import client_ip
from ..services.registration import RegistrationError, consents_accept


class SignupView(AllauthSignupView):
    """allauth's sign-up view, with the registration flow's form.

    - ``?campaign=`` (or ``?promo=``) on a sign-up link is kept in the session
      and chooses the flow, with the country of residence;
    - an htmx request (the country or promo code changed) gets the form
      alone, rebuilt for the flow that now applies;
    - ``?flow=<id>`` shows a flow to staff who may see flows (a preview
      that cannot be sent); it is ignored for anyone else.
    """

    preview_flow = None

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "GET" and "flow" in request.GET and request.user.is_staff:
            self.preview_flow = registration.flow_get_for_preview(
                user=request.user, flow_id=request.GET["flow"]
            )
            form = self.get_form()
            response = self.render_to_response(self.get_context_data(form=form))
            add_never_cache_headers(response)
            return response
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        code = registration.campaign_normalise(
            request.GET.get("campaign") or request.GET.get("promo")
        )
        if code and request.session.get(registration.SESSION_CAMPAIGN) != code:
            request.session[registration.SESSION_CAMPAIGN] = code
        return super().get(request, *args, **kwargs)

    def get_initial(self) -> dict:
        initial = super().get_initial()
        query = self.request.GET
        if query.get("country"):
            initial["country"] = query["country"]
        if "promo_code" in query:  # the field's value, as the htmx request sends it
            initial["promo_code"] = query["promo_code"]
        elif query.get("campaign") or query.get("promo"):
            initial["promo_code"] = registration.campaign_normalise(
                query.get("campaign") or query.get("promo")
            )
        return initial

    def get_form_kwargs(self) -> dict:
        kwargs = super().get_form_kwargs()
        kwargs["request"] = self.request
        kwargs["preview_flow"] = self.preview_flow
        return kwargs

    def get_template_names(self) -> list[str]:
        if self.request.htmx and self.request.method == "GET":
            return ["account/_signup_form.html"]
        return super().get_template_names()

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        form = context["form"]
        if not form.is_bound:
            form.refuse_blocked_country()
        context["preview"] = self.preview_flow is not None
        context["flow"] = form.flow
        return context

    def form_valid(self, form) -> HttpResponse:
        try:
            return super().form_valid(form)
        except RegistrationError as exc:
            # Something changed between the form's checks and the save (a
            # version published, a country blocked): everything was rolled
            # back; show the form as it is now, with what to do.
            self._cached_form = None  # allauth's view keeps the form it built
            fresh = self.get_form()
            if fresh.is_valid():
                fresh.add_error(exc.field if exc.field in fresh.fields else None, str(exc))
            return self.form_invalid(fresh)


signup = SignupView.as_view()


@require_GET
def legal_document(request: HttpRequest, slug: str, version: str | None = None) -> HttpResponse:
    """A legal document's public page: the version in effect, or the one
    named in the URL (which is what a consent links to)."""
    page = registration.legal_page(slug=slug, version=version)
    return render(request, "accounts/legal_document.html", {"page": page})


@login_required
@require_http_methods(["GET", "POST"])
def consents(request: HttpRequest) -> HttpResponse:
    """New versions of documents the client accepted before, to accept."""
    error = ""
    if request.method == "POST":
        try:
            ids = [int(v) for v in request.POST.getlist("version")]
        except ValueError:
            ids = [-1]  # refused below, like any other id that is not waiting
        try:
            consents_accept(user=request.user, version_ids=ids, ip=client_ip(request))
        except RegistrationError as exc:
            error = str(exc)
        else:
            messages.success(request, "Thank you: your acceptance is recorded.")
            return redirect("room:dashboard")
    pending = list(registration.consents_pending(user=request.user))
    context = {"pending": pending, "error": error, "nav_active": "dashboard"}
    return render(request, "accounts/consents.html", context, status=400 if error else 200)
