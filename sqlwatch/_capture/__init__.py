"""Capture: the only code that touches ``sqlalchemy.event``."""
