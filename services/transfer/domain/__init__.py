"""Pure transfer rules: no I/O, no framework."""
