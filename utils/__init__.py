"""Shared utilities at the bottom of the package: atomic writes, errors, argument checks."""
