"""Readers for store exports and event streams: file -> validated columnar batch + rejects."""
