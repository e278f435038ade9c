"""History rules (H5xx): ``django_migrations`` against the real schema and the code.

They are emitted by ``doctor`` (``db/doctor.py``), which introspects the database and hands
the evidence in; the rules only word it. ``check`` never reports them.
"""
