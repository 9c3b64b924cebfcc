"""Composer logger destinations of this package."""
