from django.apps import AppConfig
from django.db import DatabaseError


class SettingsStoreConfig(AppConfig):
    name = "settings_store"

    def ready(self) -> None:
        # Make sure every default setting exists, so that templates and views can read them
        # without a fallback. This runs in every process that starts Django -- web workers,
        # `migrate` itself -- before and while the migrations run (A601): against a database
        # where the table may not exist yet, or may be half-migrated.
        from .defaults import DEFAULTS
        from .models import Setting

        try:
            existing = set(Setting.objects.values_list("key", flat=True))
            Setting.objects.bulk_create(
                [
                    Setting(key=key, value=value)
                    for key, value in DEFAULTS.items()
                    if key not in existing
                ]
            )
        except DatabaseError:
            # No database yet, or the table is not migrated yet: nothing to do.
            pass
