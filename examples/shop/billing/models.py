from django.db import models


class TaxRate(models.Model):
    country = models.CharField(max_length=2)
    rate = models.DecimalField(max_digits=5, decimal_places=2)
    valid_from = models.DateField()


class Invoice(models.Model):
    # Billing started as a separate service with its own database: invoices point at orders
    # without a database-level constraint.
    order = models.ForeignKey(
        "orders.Order", on_delete=models.PROTECT, db_constraint=False, related_name="invoices"
    )
    number = models.CharField(max_length=32, unique=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    issued_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.number


class Payment(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="payments")
    amount_cents = models.IntegerField()
    provider = models.CharField(max_length=30)
    provider_ref = models.CharField(max_length=100)
    paid_at = models.DateTimeField(null=True, blank=True)
