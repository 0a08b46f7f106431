"""The enrollment service."""
