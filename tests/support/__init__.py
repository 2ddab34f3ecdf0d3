"""Helpers the tests share: importable as ``support`` (pyproject's pytest ``pythonpath``).

cluster: the pieces a test's small cluster is built from (the fixtures are in tests/conftest.py);
golden: golden files of generated output; privileges: what needs root, and the skip that says so.
Free ports come from xcatd.lab.ports (tests, benchmarks and the lab share it)."""
