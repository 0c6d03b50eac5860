#!/usr/bin/env python3
"""Latency across regions: Encrypt and CreateKey p50/p99 through every node of a 5-node cluster in
three regions (2+2+1 voters, the layout of cluster-config/three-regions), with latency-proxy delays
between the regions, once with follower read leases and once without.

Run by benches/regions.sh (which builds the release binary and runs this as root); see there.

The nodes live in network namespaces (jepsen/rkj/cluster.py: TLS, mutual TLS between nodes, the
unseal key, init, a credential); every Raft connection passes a userspace proxy that delays each
chunk by the one-way latency between the two nodes' regions (jepsen/rkj/proxy.py, per source
address). The load generator is `raftkms bench` in the host namespace, an open loop at a fixed
rate; it dials each node directly, as a client in that node's region would.

Every run also records, from the node's /metrics, how its reads were served (follower-lease reads,
read-gate rounds), and the script fails instead of reporting when the setup silently did nothing:
a follower with a lease must have served its reads under it, and a follower without one must have
paid at least the round trip to the leader.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "jepsen"))
from rkj.cluster import Cluster  # noqa: E402
from rkj.client import KmsClient  # noqa: E402

REGIONS = {1: "ap-guangzhou", 2: "ap-guangzhou", 3: "ap-shanghai", 4: "ap-shanghai",
           5: "ap-singapore"}
# One-way delay between two regions, ms (the round trip is twice this).
ONE_WAY_MS = {("ap-guangzhou", "ap-shanghai"): 30, ("ap-guangzhou", "ap-singapore"): 50,
              ("ap-shanghai", "ap-singapore"): 80}
# docs/multi-region.md, "Timing across regions": the row for regions 30-80 ms apart one way.
TIMING = {"heartbeat-ms": 250, "election-min-ms": 1000, "election-max-ms": 1400,
          "read-lease-ms": 600, "write-timeout-ms": 5000, "read-timeout-ms": 3000,
          "rpc-timeout-ms": 1000}
HOLDER_LEASE_MS = 1200


def one_way(a, b):
    return 0 if a == b else ONE_WAY_MS.get((a, b), ONE_WAY_MS.get((b, a), 0))


def log(msg):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg), flush=True)


def metrics(cluster, i):
    """The counters of node i's /metrics that say how reads were served, and how leases were
    granted and applies gated."""
    url = "https://%s/metrics" % cluster.nodes[i].api
    with urllib.request.urlopen(url, context=cluster.api_tls, timeout=5) as r:
        text = r.read().decode()
    out = {}
    for name in ("raftkms_holder_reads_total", "raftkms_read_gate_rounds_total",
                 "raftkms_read_gate_leased_total", "raftkms_read_gate_waits_total",
                 "raftkms_lease_grants_total", "raftkms_lease_grants_from_acks_total",
                 "raftkms_apply_gate_seconds_sum", "raftkms_apply_gate_seconds_count"):
        m = re.search(r"^%s (\S+)$" % name, text, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def client(cluster, i):
    n = cluster.nodes[i]
    return KmsClient(n.api, n.region, cluster.secret_id, cluster.secret_key, cluster.api_tls)


def bench(args, cluster, i, workload, rate, key_id=None, stale=False):
    n = cluster.nodes[i]
    cmd = [args.binary, "bench", "--target", "kms", "--endpoints", "https://%s" % n.api,
           "--region", n.region, "--ca", cluster.ca_file, "--workload", workload,
           "--rate", str(rate), "--connections", "4", "--duration", str(args.duration), "--json"]
    if key_id:
        cmd += ["--key-id", key_id]
    if stale:
        cmd.append("--stale")
    env = dict(os.environ, KMS_SECRET_ID=cluster.secret_id, KMS_SECRET_KEY=cluster.secret_key)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.duration + 60)
    if p.returncode != 0:
        raise SystemExit("raftkms bench through node %d failed: %s" % (i, p.stderr[-2000:]))
    return json.loads(p.stdout)


def wait_holder(cluster, i, key_id, deadline):
    """Until follower i serves a linearizable read under its lease (holder reads move)."""
    c = client(cluster, i)
    while time.time() < deadline:
        before = metrics(cluster, i)["raftkms_holder_reads_total"]
        c.call("DescribeKey", {"KeyId": key_id}, write=False)
        if metrics(cluster, i)["raftkms_holder_reads_total"] > before:
            return
        time.sleep(0.2)
    raise SystemExit("node %d never served a read under a follower lease" % i)


def phase(args, name, out):
    """One cluster: `leases` (follower read leases, every node a holder), `gate-only` (leases
    configured, so the leader's apply gate and announcements run, but no node holds one:
    `reads.hold-lease = false`; only CreateKey through the leader, to show what the holders'
    renewals cost writes), `no-leases`."""
    lease = name != "no-leases"
    holders = name == "leases"
    work = tempfile.mkdtemp(prefix="raftkms-regions-")
    run_dir = os.path.join(out, "logs-%s" % name)
    os.makedirs(run_dir, exist_ok=True)
    timing = dict(TIMING, **{"holder-lease-ms": HOLDER_LEASE_MS if lease else 0})
    cluster = Cluster(run_dir, work, 5, args.binary, proxy=True, timing=timing, regions=REGIONS,
                      log=log)
    # raftkms's default (the jepsen suite checkpoints every 2 s): no more background writes
    # than a deployment has.
    cluster.audit_checkpoint_s = 30
    if not holders:
        cluster.extra_toml = ["[reads]", "hold-lease = false"] if lease else []
    rows = []
    try:
        log("%s: booting 5 nodes in 3 regions (timing %s)" % (name, timing))
        cluster.boot()
        cluster.set_region_latency(ONE_WAY_MS)
        leader = None
        deadline = time.time() + 60
        while time.time() < deadline and leader is None:
            leader = cluster.leader()
            time.sleep(0.2)
        if leader is None:
            raise SystemExit("no leader")
        # Keys are regional: one per region, made through a node of that region.
        keys = {}
        for i in sorted(cluster.nodes):
            region = cluster.nodes[i].region
            if region in keys:
                continue
            r = client(cluster, i).call("CreateKey", {"Alias": "regions-bench"}, write=True)
            if r.kind != "ok":
                raise SystemExit("CreateKey in %s failed: %s %s" % (region, r.code, r.message))
            keys[region] = r.fields["KeyId"]
        cluster.verify_latency(timeout=10)
        time.sleep(2)
        leader = cluster.leader()
        lregion = cluster.nodes[leader].region
        log("%s: leader node %d (%s); keys %s" % (name, leader, lregion, keys))
        if holders:
            for i in cluster.nodes:
                if i != leader:
                    wait_holder(cluster, i, keys[cluster.nodes[i].region], time.time() + 30)
        for i in sorted(cluster.nodes):
            node = cluster.nodes[i]
            role = "leader" if i == leader else "follower"
            rtt = 2 * one_way(node.region, lregion)
            kinds = [("encrypt", "linearizable", False), ("encrypt", "stale", True),
                     ("create", "linearizable", False)]
            if name == "gate-only" or args.leader_create_only:
                if role != "leader":
                    continue
                kinds = [("create", "linearizable", False)]
            for workload, consistency, stale in kinds:
                before = metrics(cluster, i)
                s = bench(args, cluster, i, workload,
                          args.rate if workload == "encrypt" else args.create_rate,
                          key_id=keys[node.region] if workload == "encrypt" else None,
                          stale=stale)
                after = metrics(cluster, i)
                delta = {k: after[k] - before[k] for k in after}
                now_leader = cluster.leader()
                row = {"phase": name, "holder_lease_ms": timing["holder-lease-ms"],
                       "holders": holders, "node": i,
                       "region": node.region, "role": role, "leader": leader,
                       "leader_region": lregion, "leader_after": now_leader,
                       "rtt_to_leader_ms": rtt, "workload": workload,
                       "consistency": consistency, "summary": s, "metrics_delta": delta}
                rows.append(row)
                with open(os.path.join(out, "runs.jsonl"), "a") as f:
                    f.write(json.dumps(row, sort_keys=True) + "\n")
                lat = s["latency_ms"]
                log("%s: node %d %s %-8s %-6s %-12s ok %d err %s p50 %.2f p99 %.2f ms "
                    "(holder reads +%d, read-gate rounds +%d)" % (
                        name, i, node.region, role, workload, consistency, s["ok"],
                        sum(s["errors"].values()), lat["p50"], lat["p99"],
                        delta["raftkms_holder_reads_total"],
                        delta["raftkms_read_gate_rounds_total"]))
                if role == "leader" and holders:
                    log("%s: leader granted %d leases, %d of them dated by acknowledgements" % (
                        name, delta["raftkms_lease_grants_total"],
                        delta["raftkms_lease_grants_from_acks_total"]))
                if role == "leader" and lease and workload == "create":
                    n = delta["raftkms_apply_gate_seconds_count"]
                    log("%s: leader applied %d batches, each waiting %.1f ms on average at the "
                        "apply gate (%.1f s in all)" % (
                            name, n, 1000 * delta["raftkms_apply_gate_seconds_sum"] / max(1, n),
                            delta["raftkms_apply_gate_seconds_sum"]))
                check(row, max_rtt_from_leader(cluster, lregion))
    finally:
        cluster.teardown()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def max_rtt_from_leader(cluster, lregion):
    """The round trip from the leader's region to the farthest node's."""
    return max(2 * one_way(lregion, n.region) for n in cluster.nodes.values())


def check(row, farthest_rtt):
    """Refuses a run whose setup did nothing: errors, a leader change, a follower that did not
    use its lease, a follower without one that did not ask the leader (or, in another region,
    did not pay the round trip), a write with leases that did not wait for the farthest
    holder."""
    s, d = row["summary"], row["metrics_delta"]
    what = "node %d %s %s" % (row["node"], row["workload"], row["consistency"])
    if s["ok"] == 0 or sum(s["errors"].values()) > 0:
        raise SystemExit("%s: errors %r (ok %d)" % (what, s["errors"], s["ok"]))
    if row["leader_after"] != row["leader"]:
        raise SystemExit("%s: the leader changed during the run" % what)
    if row["workload"] == "create" and row.get("holders", row["holder_lease_ms"]) \
            and row["role"] == "leader":
        # Every holder must have the write before it is acknowledged: the farthest one's round
        # trip bounds it from below (the proxy is in the path).
        if s["latency_ms"]["p50"] < farthest_rtt:
            raise SystemExit("%s: p50 %.1f ms below the %d ms round trip to the farthest holder"
                             % (what, s["latency_ms"]["p50"], farthest_rtt))
    if row["workload"] != "encrypt" or row["consistency"] != "linearizable" \
            or row["role"] != "follower":
        return
    if row["holder_lease_ms"]:
        if d["raftkms_holder_reads_total"] < 0.99 * s["ok"]:
            raise SystemExit("%s: only %d of %d reads under the follower lease" % (
                what, d["raftkms_holder_reads_total"], s["ok"]))
    else:
        if d["raftkms_holder_reads_total"] > 0:
            raise SystemExit("%s: served reads under a lease in the no-lease phase" % what)
        if d["raftkms_read_gate_rounds_total"] <= 0:
            raise SystemExit("%s: no read-index round asked of the leader" % what)
        if s["latency_ms"]["p50"] < row["rtt_to_leader_ms"]:
            raise SystemExit("%s: p50 %.1f ms below the %d ms round trip to the leader: is the "
                             "latency proxy in the path?" % (what, s["latency_ms"]["p50"],
                                                             row["rtt_to_leader_ms"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--rate", type=int, default=100, help="Encrypt requests per second")
    ap.add_argument("--create-rate", type=int, default=20, help="CreateKey requests per second")
    ap.add_argument("--phases", default="leases,gate-only,no-leases",
                    help="which clusters to run, comma-separated (a partial run is for exploring; "
                         "the docs' table needs all three)")
    ap.add_argument("--leader-create-only", action="store_true",
                    help="only CreateKey through the leader in each phase (exploring)")
    args = ap.parse_args()
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - {"leases", "gate-only", "no-leases"}
    if unknown or not phases:
        raise SystemExit("--phases: unknown or empty: %s" % ",".join(sorted(unknown)))
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    os.makedirs(args.out, exist_ok=True)
    runs = os.path.join(args.out, "runs.jsonl")
    if os.path.exists(runs):
        os.unlink(runs)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "regions": {str(k): v for k, v in REGIONS.items()},
            "one_way_ms": {"%s/%s" % k: v for k, v in ONE_WAY_MS.items()},
            "timing": TIMING, "holder_lease_ms": HOLDER_LEASE_MS, "duration_s": args.duration,
            "encrypt_rate": args.rate, "create_rate": args.create_rate,
            "commit": os.environ.get("RAFTKMS_COMMIT", ""),
            "profile": os.environ.get("PROFILE", "release"),
            "cmdline": os.environ.get("REGIONS_CMDLINE", " ".join(sys.argv))}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    for name in phases:
        phase(args, name, args.out)
    log("done: %s" % runs)


if __name__ == "__main__":
    main()
