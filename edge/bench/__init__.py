"""Measurement code shared by ``semedge bench`` and the developer suites in ``benchmarks/``."""
