"""hostagent: the server operations of one compute host."""
