import secrets

from django.conf import settings
from django.db import models


def generate_api_key() -> str:
    return secrets.token_hex(20)


class Customer(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer"
    )
    email = models.EmailField(unique=True)
    phone_number = models.CharField(max_length=32, blank=True, db_column="phone")
    country = models.CharField(max_length=2, default="GB")
    referral_code = models.CharField(max_length=12, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["referral_code"], name="customers_customer_referral_code_uniq"
            ),
        ]

    def __str__(self) -> str:
        return self.email


class Address(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="addresses")
    line1 = models.CharField(max_length=200)
    line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100)
    postcode = models.CharField(max_length=20)
    country = models.CharField(max_length=2)
    is_default = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "addresses"


class ApiToken(models.Model):
    """Keys for the partner API (marketplaces pull the catalog and push orders)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key = models.CharField(max_length=40, unique=True, default=generate_api_key)
    # sha256 of the key, so that lookups no longer compare secrets in SQL.
    token_checksum = models.CharField(max_length=64, unique=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
