"""Compatibility with the code that is still running (C1xx)."""
