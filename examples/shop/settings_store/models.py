from django.db import models


class Config(models.Model):
    """Key/value settings editable in the admin (the shop's constance-like store)."""

    key = models.CharField(max_length=255, unique=True)
    value = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.key
