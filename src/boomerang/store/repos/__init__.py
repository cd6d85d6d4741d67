"""Repositories: the only modules that hold SQL for the operational store, one per aggregate."""
