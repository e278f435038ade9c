"""The Django app: add ``"django_rollout"`` to INSTALLED_APPS for ``manage.py rollout``."""

from __future__ import annotations

from django.apps import AppConfig


class RolloutConfig(AppConfig):
    name = "django_rollout"
    verbose_name = "django-rollout"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registration only: the check queries nothing until Django runs database checks.
        from django_rollout import checks  # noqa: F401
