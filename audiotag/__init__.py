"""audiotag: multi-label audio tagging with the FAT2019 two-stage, 5-fold recipe.

The library is plain Python: importable and testable without Prefect.
"""

__version__ = "0.1.0"
