"""Native export: a model's predict as a standalone C library (see writer.py)."""
from .program import ExportPlan, IOSpec
from .writer import write_export

__all__ = ["ExportPlan", "IOSpec", "write_export"]
