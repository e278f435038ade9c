from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        SHIPPED = "shipped"
        CANCELLED = "cancelled"

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    currency = models.CharField(max_length=3, default="EUR", help_text="ISO 4217 code.")
    total = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    customer_note = models.TextField(blank=True)
    # Every existing order came through the web shop, the channel row with id 1.
    channel = models.ForeignKey(
        "catalog.SalesChannel", on_delete=models.PROTECT, related_name="orders", default=1
    )
    placed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "-placed_at"], name="orders_order_history_idx"),
            models.Index(fields=["status", "placed_at"], name="orders_order_dashboard_idx"),
        ]

    def __str__(self) -> str:
        return f"Order #{self.pk}"


class OrderItem(models.Model):
    # Renamed from OrderLine; the table keeps its name so both releases share it.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(
        "catalog.Product", on_delete=models.PROTECT, related_name="order_lines"
    )
    quantity = models.PositiveIntegerField(default=1)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        db_table = "orders_orderline"
        constraints = [
            models.UniqueConstraint(
                fields=["order", "product"], name="orders_orderline_unique_product_per_order"
            ),
        ]
