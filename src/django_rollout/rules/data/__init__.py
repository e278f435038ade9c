"""Data that is already there (D2xx)."""
