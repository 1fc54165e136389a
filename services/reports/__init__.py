"""Every rendering of a report, in one package: reporters read a report; they never feed
back into measurement (vegeta's reporters).

- ``distribution``: the percentiles every view shows, and the one distribution function
- ``text``: the terminal (live lines, summary tables) — ``surge run``, ``surge report``
- ``junit``: JUnit XML for CI — ``--junit``
- ``html``: one self-contained HTML page — ``--html``, the UI's "HTML" button
- ``curves``: what the UI's report and compare pages draw (percentile curves)
"""
