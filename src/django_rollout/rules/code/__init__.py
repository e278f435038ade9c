"""Migration code and graph (M4xx)."""
