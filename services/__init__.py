"""Stratus services: api_gateway, placement, scheduler, quota, hostagent; common/ plumbing."""
