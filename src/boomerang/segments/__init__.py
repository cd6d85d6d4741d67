"""Segments: RFM, the rule language and its compiler, built-in segments (docs/segments.md)."""
