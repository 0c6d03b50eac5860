#!/usr/bin/env python3
"""A docs/benchmarks.md block that quotes a committed raw output file verbatim, with the command
that produced it, so no figure in the docs is typed by hand:

    raw-block.py FILE [--lines N] [--grep REGEX] | report.py --splice docs/benchmarks.md NAME

FILE's first line must be the command, as `$ <command>` (the scripts' callers write it so:
`{ echo "$ benches/failover.sh 5"; benches/failover.sh 5; } > FILE`). The block shows that
command, a link to FILE, and FILE's last N lines (default 30) or its lines matching REGEX."""
import argparse
import os
import re
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--lines", type=int, default=30)
    p.add_argument("--grep", default=None)
    a = p.parse_args()
    with open(a.file, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    if not lines or not lines[0].startswith("$ "):
        sys.exit("%s: the first line must be the command ($ ...)" % a.file)
    cmd, body = lines[0][2:], lines[1:]
    shown = [l for l in body if re.search(a.grep, l)] if a.grep else body[-a.lines:]
    rel = os.path.relpath(os.path.abspath(a.file), os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "..", "docs"))
    print("Command: `%s`; raw output [`%s`](%s) (%s):\n" % (
        cmd, os.path.relpath(os.path.abspath(a.file), os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..")), rel,
        "lines matching `%s`" % a.grep if a.grep else "its last %d lines" % len(shown)))
    print("```")
    print("\n".join(shown))
    print("```")


main()
