"""Pure notify rules: no I/O, no framework."""
