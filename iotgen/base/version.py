"""The package version (one place: pyproject reads nothing from here; keep both in step)."""

__version__ = "0.1.0"
