"""Locks and rewrites (L3xx)."""
