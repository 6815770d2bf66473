"""placement: resource providers, inventories, allocation candidates and claims."""
