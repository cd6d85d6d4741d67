"""Use cases called by every face (CLI, API, web); the only layer that opens transactions."""
