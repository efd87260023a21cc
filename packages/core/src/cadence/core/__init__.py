"""cadence.core: what every Cadence package shares."""

__version__ = "0.1.0"
