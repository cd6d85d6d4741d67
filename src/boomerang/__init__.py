"""Boomerang: a self-hosted retention engine for online stores.

The public Python API is deliberately small; faces (CLI, API) call `boomerang.services`.
Importing this package has no side effects.
"""

from boomerang.errors import BoomerangError

__all__ = ["BoomerangError", "__version__"]
__version__ = "0.1.0"
