"""Stratus services: api_gateway, placement, scheduler, quota, hostagent, and their shared plumbing."""
