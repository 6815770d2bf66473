"""api_gateway: the public compute API (stratus.compute.v1)."""
