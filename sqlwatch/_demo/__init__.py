"""The application behind ``sqlwatch demo``: a small blog with the usual mistakes.

Its frames count as user code for call sites (see ``sqlwatch._capture.call_sites``),
so the demo shows the lines a developer would fix.
"""
