"""The only package that opens database connections."""
