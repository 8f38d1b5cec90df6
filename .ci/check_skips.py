"""Fail the CI run when pytest skipped a test it was meant to run, or ran no test at all.

Usage: python3 .ci/check_skips.py JUNIT.xml   (the report of `pytest --junitxml=JUNIT.xml`)

CI has everything the suite needs (../shared/dataset, PostgreSQL, root for the tmpfs of the
disk tests), so a skip there means a test silently did not run. Prints every skip with its
reason, then exits 1 if any is not in ALLOWED, or if the report holds no test.
"""

from __future__ import annotations

import fnmatch
import sys
import xml.etree.ElementTree as ET

# "classname::name" patterns (fnmatch) of skips CI accepts, each with the reason. Keep it empty.
ALLOWED: dict[str, str] = {}


def main(report: str) -> int:
    cases = list(ET.parse(report).getroot().iter("testcase"))
    skipped = []
    for case in cases:
        for skip in case.findall("skipped"):
            skipped.append((f"{case.get('classname')}::{case.get('name')}", skip.get("message", "")))
    print(f"== skip check: {len(cases)} tests, {len(skipped)} skipped")
    unexpected = 0
    for test, message in skipped:
        allowed = next((reason for pattern, reason in ALLOWED.items() if fnmatch.fnmatchcase(test, pattern)), None)
        unexpected += allowed is None
        print(
            f"  {'allowed' if allowed else 'UNEXPECTED'} skip: {test}: {message}" + (f" ({allowed})" if allowed else "")
        )
    if not cases:
        print("FAIL: the report holds no test (pytest collected nothing)")
        return 1
    if unexpected:
        print(f"FAIL: {unexpected} test(s) skipped that CI must run (see .ci/check_skips.py ALLOWED)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
