"""lookalike: find the photos that look like a query photo."""

from __future__ import annotations

__version__ = "0.1.0"
