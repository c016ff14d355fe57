"""CSV for people who open it in a spreadsheet: what every export shares."""

from __future__ import annotations

import re

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP
# "CSV injection"); tab and carriage return hide such a start.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def csv_safe(value: str) -> str:
    """Text made inert for spreadsheets: a leading quote before a formula
    character. The numbers we write ourselves (amounts) are left as numbers."""
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


class Echo:
    """A file-like object whose write returns what it was given, so that
    ``csv.writer`` produces lines for a streaming response."""

    def write(self, value: str) -> str:
        return value
