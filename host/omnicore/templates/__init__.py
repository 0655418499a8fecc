"""Scaffolds copied by ``omnicore new``."""
