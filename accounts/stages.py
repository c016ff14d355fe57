"""The second step of signing in: a code from the authenticator or a backup code."""

from allauth.account.stages import LoginStage
from allauth.core.internal.httpkit import headed_redirect_response
from django_otp import user_has_device


class TwoFactorStage(LoginStage):
    key = "two_factor"
    urlname = "two_factor_authenticate"

    def handle(self):
        user = self.login.user
        if user is None or not user_has_device(user, confirmed=True):
            return None, True
        return headed_redirect_response(self.urlname), True
