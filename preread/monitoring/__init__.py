"""Watching every model version in use (issue 15, item 4).

* :mod:`.acquisition` — the acquisition group and input statistics of a series (recorded with
  each job);
* :mod:`.spc` — the statistical-process-control rule;
* :mod:`.monitor` — the per-reading points, the alert rounds and the page's summary.
"""
