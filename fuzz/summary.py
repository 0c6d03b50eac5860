#!/usr/bin/env python3
"""The summary table of one fuzz/run.sh output directory, from the libFuzzer logs in it (`.log`,
or `.log.gz` once compressed for the repository: the last status line, the final stats and the
corpus counts the script appends). Usage: fuzz/summary.py DIR > DIR/summary.md"""
import gzip
import os
import re
import sys


def parse(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    status = [l for l in text.splitlines() if re.match(r"#\d+\s+(DONE|pulse|NEW|REDUCE|INITED)", l)]
    last = status[-1] if status else ""
    def field(name, line=last):
        m = re.search(r"%s: (\S+)" % name, line)
        return m.group(1) if m else "-"
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
    tail = dict(re.findall(r"(corpus_before|corpus_after|exit)=(\d+)", text))
    runs = stats.get("number_of_executed_units", "-")
    done = re.search(r"^Done (\d+) runs in (\d+) second", text, re.M)
    secs = int(done.group(2)) if done else None
    corp = field("corp")
    crashed = "no" if tail.get("exit") == "0" else "**yes** (exit %s)" % tail.get("exit", "?")
    return {"runs": runs, "secs": secs, "exec_s": stats.get("average_exec_per_sec", "-"),
            "cov": field("cov"), "ft": field("ft"), "corp": corp,
            "before": tail.get("corpus_before", "-"), "after": tail.get("corpus_after", "-"),
            "rss": stats.get("peak_rss_mb", "-"), "crashed": crashed}


def main():
    d = sys.argv[1]
    meta = dict(l.strip().split("=", 1) for l in open(os.path.join(d, "meta.env")) if "=" in l)
    print("fuzz/run.sh, %s, commit %s, %s s per target, %s, %s cores (load %s -> %s)\n" % (
        meta.get("date"), meta.get("commit"), meta.get("seconds_per_target"), meta.get("rustc"),
        meta.get("cpus"), meta.get("load_at_start"), meta.get("load_at_end")))
    print("| target | seconds | executions | exec/s | coverage (edges) | features | corpus "
          "(entries/bytes) | corpus files before → after | peak RSS MB | crash |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    total_s = 0
    logs = {f.split(".log")[0]: f for f in os.listdir(d) if f.endswith((".log", ".log.gz"))}
    for name in sorted(logs):
        r = parse(os.path.join(d, logs[name]))
        total_s += r["secs"] or 0
        print("| `%s` | %s | %s | %s | %s | %s | %s | %s → %s | %s | %s |" % (
            name, r["secs"] or "-", r["runs"], r["exec_s"], r["cov"], r["ft"], r["corp"],
            r["before"], r["after"], r["rss"], r["crashed"]))
    print("\nTotal: %d s (%.1f h) of fuzzing." % (total_s, total_s / 3600))


main()
