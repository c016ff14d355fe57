"""django-import-export resources of the accounts app.

:class:`DealResource` is the one definition of a deal report's columns: the
admin exports deals through it (``ExportMixin``, CSV or XLSX), and the deal
report import (``accounts.platforms.files``) reads files with the same column
names and parses values by the same widgets' rules, so that an exported file
can be imported back (and adds nothing the second time).

The import itself does not go through ``Resource.import_data``: see the
module docstring of ``accounts.platforms.files`` for why.
"""

from __future__ import annotations

from import_export import fields, resources, widgets

from backoffice.money import from_minor

from .models import Deal

#: Date and time as exported (UTC) and as the import reads first.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class DealResource(resources.ModelResource):
    """One row per deal; money in major units of the account's currency."""

    ticket = fields.Field(attribute="ticket", column_name="ticket", widget=widgets.IntegerWidget())
    login = fields.Field(attribute="account__login", column_name="login")
    symbol = fields.Field(attribute="symbol", column_name="symbol")
    side = fields.Field(attribute="side", column_name="side")
    volume = fields.Field(attribute="volume", column_name="volume", widget=widgets.DecimalWidget())
    open_time = fields.Field(
        attribute="open_time",
        column_name="open_time",
        widget=widgets.DateTimeWidget(format=DATETIME_FORMAT),
    )
    close_time = fields.Field(
        attribute="close_time",
        column_name="close_time",
        widget=widgets.DateTimeWidget(format=DATETIME_FORMAT),
    )
    open_price = fields.Field(
        attribute="open_price", column_name="open_price", widget=widgets.DecimalWidget()
    )
    close_price = fields.Field(
        attribute="close_price", column_name="close_price", widget=widgets.DecimalWidget()
    )
    profit = fields.Field(column_name="profit", widget=widgets.DecimalWidget())
    commission = fields.Field(column_name="commission", widget=widgets.DecimalWidget())
    swap = fields.Field(column_name="swap", widget=widgets.DecimalWidget())
    # Export only: the import ignores columns it does not know.
    currency = fields.Field(attribute="account__currency", column_name="currency")
    client = fields.Field(attribute="client__email", column_name="client")
    platform = fields.Field(attribute="platform__identifier", column_name="platform")

    #: The columns of a deal report, in order; the import needs all but
    #: :attr:`OPTIONAL_COLUMNS` (an absent or empty one reads as 0).
    REPORT_COLUMNS = (
        "ticket",
        "login",
        "symbol",
        "side",
        "volume",
        "open_time",
        "close_time",
        "open_price",
        "close_price",
        "profit",
        "commission",
        "swap",
    )
    OPTIONAL_COLUMNS = ("commission", "swap")

    class Meta:
        model = Deal
        fields = [
            "ticket",
            "login",
            "symbol",
            "side",
            "volume",
            "open_time",
            "close_time",
            "open_price",
            "close_price",
            "profit",
            "commission",
            "swap",
            "currency",
            "client",
            "platform",
        ]
        export_order = fields

    @classmethod
    def report_widgets(cls) -> dict[str, widgets.Widget]:
        """The widget of each report column (the import's fallback parsers)."""
        declared = cls.fields
        return {name: declared[name].widget for name in cls.REPORT_COLUMNS}

    def _major(self, deal: Deal, minor: int):
        return from_minor(minor, deal.account.currency_digits)

    def dehydrate_profit(self, deal: Deal):
        return self._major(deal, deal.profit)

    def dehydrate_commission(self, deal: Deal):
        return self._major(deal, deal.commission)

    def dehydrate_swap(self, deal: Deal):
        return self._major(deal, deal.swap)
