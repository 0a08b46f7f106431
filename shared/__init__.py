"""Shared plumbing and contracts; never business rules."""
