"""The `stratus` command groups, one module per resource."""
