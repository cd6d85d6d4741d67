"""The `boomerang` command line: parses, calls a service, renders with Rich."""
