from django.db import models


class TaxRate(models.Model):
    country = models.CharField(max_length=2)
    rate = models.DecimalField(max_digits=5, decimal_places=2)
    valid_from = models.DateField()

    class Meta:
        indexes = [
            models.Index(fields=["country", "-valid_from"], name="billing_taxrate_lookup_idx"),
        ]


class Invoice(models.Model):
    # Billing started as a separate service with its own database, so invoices pointed at
    # orders without a database-level constraint until 0004.
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="invoices")
    number = models.CharField(max_length=32, unique=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    issued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["order"], name="billing_invoice_one_per_order"),
        ]

    def __str__(self) -> str:
        return self.number


class Payment(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="payments")
    # Who paid: added without a constraint or an index (0005); the index was built
    # concurrently (0006), the constraint NOT VALID (0007) and validated apart (0008).
    customer = models.ForeignKey(
        "customers.Customer",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        db_index=False,
        related_name="payments",
    )
    amount_cents = models.BigIntegerField()
    provider = models.CharField(max_length=30)
    provider_ref = models.CharField(max_length=255)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["customer"], name="billing_payment_customer_idx"),
        ]
