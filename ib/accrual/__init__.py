"""The deal accrual engine behind :func:`ib.services.accrual.accrual_run`.

- :mod:`.terms`: a plan version's terms as accrual reads them, periods,
  the run's exchange rates;
- :mod:`.reference`: the rules written out deal by deal in Python (the
  engine on SQLite, and the oracle the PostgreSQL engine is tested against);
- :mod:`.timeline`: the partner chains and plan versions as time intervals;
- :mod:`.postgres`: the same rules set-based, one ``INSERT ... SELECT`` per
  chunk of deal ids.
"""
