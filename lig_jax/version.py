"""The package version (read by pyproject.toml, stamped into results and run manifests)."""

__version__ = "0.1.0"
