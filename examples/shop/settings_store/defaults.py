"""Settings every deployment must have; created at start-up when missing."""

DEFAULTS = {
    "SHOP_NAME": "Example Shop",
    "FREE_SHIPPING_THRESHOLD": 50,
    "MAINTENANCE_MODE": False,
    "SUPPORT_EMAIL": "support@example.com",
}
