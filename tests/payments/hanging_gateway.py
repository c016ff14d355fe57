"""A demo platform whose balance operations hang after they are applied, for
the worker test: imported by the test and by the worker (``--include``), it
registers itself as the gateway ``hanging``. ``platform.settings`` say how
long to hang (``hang_seconds``)."""

from __future__ import annotations

import time

from accounts.platforms import GATEWAYS
from accounts.platforms.demo import DemoGateway


class HangingGateway(DemoGateway):
    label = "Demo platform that hangs after applying (tests)"

    def balance_operation(self, *, login, amount, comment, key):
        ticket = super().balance_operation(login=login, amount=amount, comment=comment, key=key)
        time.sleep(float(self.settings.get("hang_seconds", 0)))  # the worker is killed here
        return ticket


GATEWAYS._paths["hanging"] = f"{__name__}.HangingGateway"
