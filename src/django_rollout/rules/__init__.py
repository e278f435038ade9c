"""The hazard catalogue: one module per rule, in folders by family."""
