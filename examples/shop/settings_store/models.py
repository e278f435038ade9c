from django.db import models


class Setting(models.Model):
    """The new store: typed JSON values, one row per key."""

    key = models.CharField(max_length=255, unique=True)
    value = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key
