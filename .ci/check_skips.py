"""Fail the CI run when pytest skipped a test it was meant to run, ran no test at all, or left one out.

Usage:
  python3 .ci/check_skips.py JUNIT.xml
      (the report of `pytest --junitxml=JUNIT.xml`): skips and the count.
  python3 .ci/check_skips.py --covers COLLECTED.txt JUNIT.xml [JUNIT.xml ...]
      (COLLECTED.txt: the output of `pytest --collect-only -q`): every collected test is in
      one of the reports, so that `make test` and `make test-long` together leave none out.

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


def junit_name(node_id: str) -> str:
    """``tests/a/test_b.py::Class::test[x]`` as JUnit names it: ``tests.a.test_b.Class::test[x]``."""
    base, bracket, param = node_id.partition("[")  # a parameter id may hold "::" (an IPv6 URL)
    path, *names = base.split("::")
    return ".".join([path.removesuffix(".py").replace("/", "."), *names[:-1]]) + "::" + names[-1] + bracket + param


def covers(collected: str, reports: list[str]) -> int:
    with open(collected, encoding="utf-8") as f:
        wanted = {junit_name(line.strip()) for line in f if "::" in line}
    ran = {
        f"{case.get('classname')}::{case.get('name')}"
        for report in reports
        for case in ET.parse(report).getroot().iter("testcase")
    }
    left_out = sorted(wanted - ran)
    print(f"== coverage check: {len(wanted)} tests collected, {len(wanted & ran)} in the reports")
    for test in left_out:
        print(f"  NOT RUN: {test}")
    if not wanted:
        print("FAIL: the collected list holds no test")
        return 1
    if left_out:
        print(f"FAIL: {len(left_out)} collected test(s) ran in neither report")
        return 1
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--covers"]:
        sys.exit(covers(sys.argv[2], sys.argv[3:]))
    sys.exit(main(sys.argv[1]))
