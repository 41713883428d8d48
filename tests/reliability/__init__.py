"""Reliability campaign toolkit: sample files, corruptions, the reader contract, the fuzzer.

Used by ``tests/reliability/`` (short runs) and by
``benchmarks/reliability_report.py`` (the full run that writes ``docs/reliability.md``).
Nothing here is collected by pytest (no ``test_*.py`` files).
"""
