"""The package version, written into every file krylearn makes (provenance)."""

__version__ = "0.1.0"
