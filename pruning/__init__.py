"""Neural-network pruning course package."""
