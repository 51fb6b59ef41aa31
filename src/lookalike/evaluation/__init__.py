"""Measuring retrieval quality: metrics (pure functions), benchmark datasets in their standard
layouts, the harness that indexes and scores them, and the report writer."""
