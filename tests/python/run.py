#!/usr/bin/env python3
"""run.py: runs the Python client tests (tests/python/test_*.py) against $CONVD_BIN and
ends with the line "python: N passed, M failed, S skipped" that tests/run.sh adds to its
summary. The package is imported from the source tree (clients/python). Exit status 0
only if nothing failed.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(TOP, "clients", "python"), HERE]


def main():
    suite = unittest.defaultTestLoader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    bad = [t for t, _ in result.failures + result.errors] + result.unexpectedSuccesses
    failed = len(bad)  # a failed setUpModule counts once, its tests never ran
    skipped = len(result.skipped)
    passed = result.testsRun - skipped - sum(isinstance(t, unittest.TestCase) for t in bad)
    print(f"python: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
