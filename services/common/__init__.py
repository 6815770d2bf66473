"""Plumbing every Stratus service needs; no domain logic lives here."""
