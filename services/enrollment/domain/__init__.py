"""Pure enrollment rules: no I/O, no framework."""
