"""Numbered SQL migrations (data files, read by common.db.migrate)."""
