#!/usr/bin/env python3
"""Runs an example program (examples/) and prints its table as markdown.

usage: example_table.py [--readme README.md --name NAME] -- PROGRAM [ARGS...]

An example prints a header row and one row per run, cells separated by
spaces (examples/example_util.hpp: print_row). The markdown table has the
same columns and cells.

With --readme, it checks the columns instead: README.md must hold the
line `experiments/examples.sh NAME` followed by a markdown table, and that
table's header must name exactly the columns the program prints, in order
(names only, not numbers). Exit 1 with the difference when they do not match,
or when the program fails or prints no rows. Needs only Python's standard
library (ctest runs it: tests/CMakeLists.txt, example.*).
"""
import re
import subprocess
import sys


def fail(msg, status=1):
    print("example_table.py: " + msg, file=sys.stderr)
    sys.exit(status)


def run_example(argv):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
    except OSError as e:
        fail("cannot run %s: %s" % (argv[0], e))
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        fail("%s exited with status %d" % (" ".join(argv), proc.returncode))
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    if len(rows) < 2:
        fail("%s printed no table (expected a header and rows):\n%s" % (argv[0], proc.stdout))
    header, body = rows[0], rows[1:]
    for r in body:
        if len(r) != len(header):
            fail("%s: row %r has %d cells, the header %d" % (argv[0], r, len(r), len(header)))
    return header, body


def readme_header(path, name):
    """The header cells of the first markdown table after `examples.sh NAME`."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        fail("cannot read %s: %s" % (path, e))
    marker = re.compile(r"experiments/examples\.sh %s\b" % re.escape(name))
    for i, line in enumerate(lines):
        if marker.search(line):
            for follow in lines[i + 1:]:
                if follow.startswith("|"):
                    return [c.strip().strip("`") for c in follow.strip().strip("|").split("|")]
                if follow.startswith("#"):
                    break
            fail("%s: no table after the line `experiments/examples.sh %s`" % (path, name))
    fail("%s has no line `experiments/examples.sh %s` (the command beside the example's table)"
         % (path, name))


def main(argv):
    if "--" not in argv:
        print(__doc__)
        fail("missing -- PROGRAM", 2)
    cut = argv.index("--")
    opts, program = argv[1:cut], argv[cut + 1:]
    if not program:
        fail("missing PROGRAM after --", 2)
    readme = name = None
    while opts:
        if opts[0] == "--readme" and len(opts) > 1:
            readme = opts[1]
        elif opts[0] == "--name" and len(opts) > 1:
            name = opts[1]
        else:
            fail("unknown option %r" % opts[0], 2)
        opts = opts[2:]
    header, body = run_example(program)
    if readme:
        if not name:
            fail("--readme needs --name", 2)
        want = readme_header(readme, name)
        if want != header:
            missing = [c for c in want if c not in header]
            extra = [c for c in header if c not in want]
            fail("%s's table in %s has columns %s but the program prints %s (missing: %s; "
                 "new: %s): regenerate it with experiments/examples.sh %s"
                 % (name, readme, want, header, missing or "none", extra or "none", name))
        print("%s: the program prints the %d columns of its README table (%d rows)"
              % (name, len(header), len(body)))
        return 0
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in body:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
