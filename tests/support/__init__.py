"""Helpers the tests share: importable as ``support`` (pyproject's pytest ``pythonpath``)."""
