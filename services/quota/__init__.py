"""quota: limits and usage per project."""
