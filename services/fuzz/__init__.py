"""``puente fuzz``: generated and mutated inputs through the router and the gateway."""
