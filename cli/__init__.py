"""Stratus command-line tools (stratus-manage: the signing key and tokens)."""
