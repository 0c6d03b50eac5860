"""One run: boot a cluster, run clients and a nemesis, heal, final reads, check, write the run
directory (history.jsonl, nemesis.jsonl, node logs, verdict.json, latency.svg)."""

import argparse
import atexit
import json
import os
import random
import signal
import sys
import threading
import time

from . import audit, checkers, plot
from .client import KmsClient, capture_calls, captured_calls
from .cluster import Cluster, FaultNotApplied, dump_json
from .history import History, pair
from .nemesis import Nemesis, Timeline
from .workloads import WORKLOADS

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BINARY = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/cache/raftkms/target"),
                              "debug", "raftkms")

NEMESES = {
    "none": [],
    "kill": ["kill"],
    "kill-all": ["kill-all"],
    "power": ["power"],
    "power-all": ["power-all"],
    "power-membership": ["power", "membership"],
    "pause": ["pause"],
    "partition": ["partition"],
    "isolate": ["isolate"],
    "isolate-clock": ["isolate-clock"],
    "clock": ["clock"],
    "clock-far": ["clock-far"],
    "fsync": ["fsync"],
    "membership": ["membership"],
    "latency": ["latency"],
    "mix": ["kill", "pause", "partition"],
    "root-rotate": ["root-rotate"],
    "root-rotate-kill": ["root-rotate", "kill"],
    "pause-follower": ["pause-follower"],
    "slow-follower": ["slow-follower"],
    "lease-faults": ["pause-follower", "slow-follower", "isolate"],
    "clock-rate": ["clock-rate"],
}

# The CI tier: (workload, nemesis, seconds of operations).
QUICK = [
    ("register", "partition", 35),
    ("key-set", "kill", 35),
    ("crypto", "pause", 30),
    ("stale", "isolate", 30),
    ("deletion", "clock", 30),
    ("register", "membership", 30),
    ("key-set", "kill-all", 25),
    ("crypto", "fsync", 25),
    ("register", "latency", 25),
    ("key-set", "power-all", 25),
    ("crypto", "power", 25),
    ("policy", "partition", 30),
    ("crypto", "root-rotate-kill", 30),
    ("lease", "lease-faults", 35),
    ("dialects", "kill", 25),
]

# Planted bugs and the schedule that catches each (see jepsen/README.md).
PLANTS = {
    "ack-before-fsync": ("key-set", "power-all", 30, None),
    "skip-dir-fsync": ("key-set", "power-membership", 60, None),
    "follower-serves-without-read-gate": ("register", "isolate", 30, None),
    "apply-reads-wall-clock": ("deletion", "clock", 30, None),
    "rotation-applied-only-locally": ("crypto", "none", 25, [2, 3]),
    "holder-serves-after-lease": ("lease", "isolate", 30, None),
    # 60 s: a missed write shows only while the slow holder lags and reads it in that window;
    # at 30 s the caught runs held one anomaly each, and 7 of 10 were caught (2026-12-06).
    "leader-acks-without-holder": ("lease", "slow-follower", 60, None),
    "forwarded-write-applied-twice": ("register", "latency", 30, None),
}


class Ctx:
    """What workloads see: the cluster, the history, clients per node."""

    def __init__(self, cluster, history, seed, log):
        self.cluster = cluster
        self.history = history
        self.seed = seed
        self.log = log
        self.final_seq = 0
        self.nemesis = None
        self.colocated = False

    def client(self, i, timeout=6.0):
        c = self.cluster
        clock = None
        if self.colocated:
            # A client on the node's host signs with the node's (skewed) clock.
            node = c.nodes[i]
            clock = lambda: time.time() + node.skew  # noqa: E731
        return KmsClient(c.nodes[i].api, c.nodes[i].region, c.secret_id, c.secret_key, c.api_tls,
                         timeout=timeout, clock=clock)

    def live_nodes(self):
        return [i for i in self.cluster.nodes if i not in self.cluster.removed]

    def setup_call(self, action, params, deadline_s=60):
        deadline = time.time() + deadline_s
        last = None
        while time.time() < deadline:
            for i in self.live_nodes():
                r = self.client(i).call(action, params, write=True)
                if r.kind == "ok":
                    return r
                last = r
                if r.code and r.code.startswith("InvalidParameterValue.AliasAlreadyExists"):
                    params = dict(params, Alias=params["Alias"] + "x")
            time.sleep(0.5)
        raise RuntimeError("setup call %s failed: %r %s" % (action, last, last and last.message))

    def final_op(self, node, f, value, fn):
        self.final_seq += 1
        inv = self.history.invoke("final-%d" % self.final_seq, f, value, node)
        capture_calls()
        try:
            kind, result, error = fn(self.client(node, timeout=10))
        finally:
            calls = self.answered_calls()
        self.history.complete(inv, kind if kind != "info" else "fail", result, error,
                              extra=calls)

    def answered_calls(self):
        """The history fields of the calls the op on this thread made that a node answered
        (``capture_calls`` began them): ``request_id`` (the last answer's) and ``requests``,
        one ``{"id", "node", "action", "code", "t"}`` per answered call (``code`` None for a
        success, ``t`` when the answer had been read, in history time). None if no call was
        answered."""
        calls = captured_calls()
        if not calls:
            return None
        node_of = {n.api: i for i, n in self.cluster.nodes.items()}
        reqs = [{"id": c["request_id"], "node": node_of.get(c["endpoint"]),
                 "action": c["action"], "code": c["code"],
                 "t": c["mono_ns"] - self.history.t0} for c in calls]
        return {"request_id": reqs[-1]["id"], "requests": reqs}

    def clock_timeline(self):
        return self.nemesis.clock_changes if self.nemesis else []


def check_recovery(cluster, timeout=45):
    """After healing, every member must come back: running, knowing a leader, ready. A node that
    crashes on restart (for instance on a storage invariant) or never catches up is an anomaly."""
    try:
        cluster.wait_ready(timeout)
        return checkers._result([])
    except RuntimeError as e:
        anomalies = []
        for i, node in cluster.nodes.items():
            if i in cluster.removed:
                continue
            st = cluster.status(i)
            if node.alive() and st and st.get("ready"):
                continue
            panic = ""
            try:
                with open(node.log, encoding="utf-8", errors="replace") as f:
                    lines = f.readlines()
                for n, line in enumerate(lines):
                    if "panicked at" in line:
                        panic = (line.strip() + " " + (lines[n + 1].strip() if n + 1 < len(lines)
                                                       else ""))[:600]
            except OSError:
                pass
            anomalies.append({"type": "not-recovered", "node": i, "running": node.alive(),
                              "status": st, "last_panic": panic})
        return checkers._result(anomalies or [{"type": "not-recovered", "detail": str(e)}])


def worker(ctx, wl, w, nworkers, stop, rate, rng):
    process = w
    nodes = sorted(ctx.cluster.nodes)
    clients = {i: ctx.client(i) for i in nodes}
    while not stop.is_set():
        f, value = wl.next_op(rng)
        node = rng.choice(nodes)
        inv = ctx.history.invoke(process, f, value, node)
        capture_calls()
        try:
            kind, result, error = wl.invoke(clients[node], f, value)
        except Exception as e:  # a harness bug must not hide as a pass: record and re-raise
            ctx.history.complete(inv, "info", error="harness: %r" % e,
                                 extra=ctx.answered_calls())
            raise
        ctx.history.complete(inv, kind, result, error, extra=ctx.answered_calls())
        if kind == "info":
            process += nworkers  # the process is retired: its op may still take effect
        stop.wait(rng.expovariate(rate))


def latency_stats(ops):
    lats = sorted((o.end - o.start) / 1e6 for o in ops if o.type == "ok" and o.end != float("inf"))
    if not lats:
        return {}

    def q(p):
        return round(lats[min(len(lats) - 1, int(p * len(lats)))], 2)
    return {"p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(lats[-1], 2)}


def op_stats(ops):
    out = {}
    for o in ops:
        s = out.setdefault(o.f, {"ok": 0, "fail": 0, "info": 0})
        s[o.type] += 1
    return out


def overall(results):
    """A run's verdict from its checkers' ``valid``: FAIL (False) if any failed, else UNKNOWN
    (None) if any could not decide, else PASS (True). An empty set of results is UNKNOWN."""
    valid_all = [r.get("valid") for r in results.values()]
    if False in valid_all:
        return False
    if None in valid_all or not valid_all:
        return None
    return True


def tally(verdicts):
    """(passed, failed, unknown, exit status): only PASS counts as passed; the status is 0 only
    if every run passed (an UNKNOWN run makes it 1, like a failed one)."""
    passed = sum(1 for v in verdicts if v.get("valid") is True)
    failed = sum(1 for v in verdicts if v.get("valid") is False)
    unknown = len(verdicts) - passed - failed
    return passed, failed, unknown, (0 if verdicts and passed == len(verdicts) else 1)


def run_one(args, workload, nemesis, seconds, run_dir, plant=None, plant_nodes=None, log=print):
    os.makedirs(run_dir, exist_ok=True)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    wl_cls = WORKLOADS[workload]
    faults = NEMESES[nemesis]
    work_dir = os.path.join("/var/tmp", "rkj-%d-%s" % (os.getpid(), os.path.basename(run_dir)))
    os.makedirs(work_dir, exist_ok=True)
    cluster = Cluster(run_dir, work_dir, args.nodes, args.binary, plant=plant,
                      plant_nodes=plant_nodes,
                      faketime=wl_cls.needs_faketime or any("clock" in f for f in faults),
                      fiu="fsync" in faults,
                      proxy=any(f in ("latency", "slow-follower") for f in faults),
                      lazyfs=any(f.startswith("power") for f in faults),
                      timing=dict(wl_cls.timing), log=log)
    _ACTIVE.append(cluster)
    started = time.time()
    verdict = {"workload": workload, "nemesis": nemesis, "seconds": seconds, "seed": seed,
               "plant": plant}
    history = None
    try:
        log("run %s: booting %d nodes" % (os.path.basename(run_dir), args.nodes))
        cluster.boot()
        history = History(os.path.join(run_dir, "history.jsonl"))
        ctx = Ctx(cluster, history, seed, log)
        ctx.colocated = getattr(args, "colocated_clients", False)
        wl = wl_cls(ctx)
        wl.setup()
        timeline = Timeline(history)
        nem = Nemesis(cluster, timeline, faults, seed, log=log)
        ctx.nemesis = nem
        stop = threading.Event()
        nworkers = args.concurrency or getattr(wl_cls, "workers_per_node", 2) * args.nodes
        rate = args.rate / nworkers
        threads = []
        errors = []

        def guarded(fn, *fn_args):
            try:
                fn(*fn_args)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        for w in range(nworkers):
            t = threading.Thread(target=guarded, daemon=True, name="client-%d" % w,
                                 args=(worker, ctx, wl, w, nworkers, stop, rate,
                                       random.Random(seed * 1000 + w)))
            t.start()
            threads.append(t)
        # The workload's own processes (e.g. the policy workload's revoke/grant process).
        for n, (name, fn) in enumerate(wl.dedicated()):
            t = threading.Thread(target=guarded, daemon=True, name=name,
                                 args=(fn, stop, random.Random(seed * 1000 + 999 - n)))
            t.start()
            threads.append(t)
        nem.start()
        stop.wait(seconds)
        nem.stop()
        # The heal kills a node still running under libfiu (to restart it without): a kill for
        # the audit checker, between this event and the next.
        timeline.add("heal", "all", killed=[i for i, n in cluster.nodes.items()
                                            if n.fiu and n.alive() and i not in cluster.removed])
        cluster.heal_all()
        timeline.add("healed", "all")
        stop.set()
        for t in threads:
            t.join(timeout=15)
        if errors:
            raise RuntimeError("client thread failed: %s" % errors[0])
        log("run %s: healed; waiting for the cluster, final reads" % os.path.basename(run_dir))
        recovery = check_recovery(cluster)
        time.sleep(1.0)
        wl.final()
        # Convergence: every node's applied index and digest agree (wait up to 30 s).
        samples = {}
        deadline = time.time() + 30
        while time.time() < deadline:
            samples = cluster.digests()
            vals = {json.dumps([d.get("applied_index"), d.get("digest")]) for d in samples.values()}
            if len(vals) == 1 and all("error" not in d for d in samples.values()):
                break
            time.sleep(0.5)
        # The nodes' audit trails, copied into the run directory and verified with the binary
        # (against the cluster's checkpoints: the cluster still runs).
        audit.collect(cluster, run_dir, log)
        history.close()
        t_end = history.now()
        ops = pair(history.events)
        trails = audit.load(run_dir)
        # Answers a node withheld because its audit trail had failed (InternalError, fail
        # closed) say nothing about the request: marked for the workload's checkers.
        checkers.mark_audit_withheld(ops, checkers.audit_withheld(ops, timeline.events, trails,
                                                                  t_end))
        results = wl.check(ops)
        results["convergence"] = checkers.check_convergence(samples)
        results["recovery"] = recovery
        results["audit"] = checkers.check_audit(ops, timeline.events, trails, t_end)
        # The faults themselves: one not applied fails the run, a harness that could not act
        # makes it UNKNOWN (see nemesis.py).
        results["nemesis"] = nem.result()
        windows = timeline.windows()
        dump_json(os.path.join(run_dir, "nemesis.json"), timeline.events)
        in_fault = sum(1 for o in ops if any(s <= o.start <= (e or t_end) for s, e, _ in windows))
        verdict.update({
            "valid": overall(results),
            "checkers": results,
            "anomalies": sum(r.get("anomaly_count", 0) for r in results.values()),
            "ops": op_stats(ops),
            "total_ops": len(ops),
            "ops_during_faults": in_fault,
            "latency": latency_stats(ops),
            "faults": len(windows),
            "wall_seconds": round(time.time() - started, 1),
            "digests": samples,
        })
        plot.render(os.path.join(run_dir, "latency.svg"), ops, windows,
                    "%s / %s%s" % (workload, nemesis, " / plant " + plant if plant else ""),
                    t_end)
    except BaseException as e:
        # A fault whose effect is missing (e.g. a node started without libfaketime) fails the
        # run; anything else that stopped it means the harness could not finish: UNKNOWN.
        verdict.update({"valid": False if isinstance(e, FaultNotApplied) else None,
                        "error": repr(e)})
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
        if history is not None:
            history.close()
        cluster.teardown()
        _ACTIVE.remove(cluster)
        import shutil
        shutil.rmtree(work_dir, ignore_errors=True)
        verdict.setdefault("wall_seconds", round(time.time() - started, 1))
        dump_json(os.path.join(run_dir, "verdict.json"), verdict)
    return verdict


_ACTIVE = []


def _teardown_all():
    for c in list(_ACTIVE):
        try:
            c.teardown()
        except Exception:
            pass


def _on_signal(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


def summarize(v):
    checks = v.get("checkers", {})
    bad = ["%s:%s" % (k, r.get("anomaly_count", 0) if r.get("valid") is False else "unknown")
           for k, r in checks.items() if r.get("valid") is not True]
    state = {True: "PASS", False: "FAIL", None: "UNKNOWN"}[v.get("valid")]
    return "%-7s %-9s %-11s ops=%-5s faults=%-3s anomalies=%s %s%s (%.0fs)" % (
        state, v["workload"], v["nemesis"], v.get("total_ops", "-"), v.get("faults", "-"),
        v.get("anomalies", "-"), " ".join(bad), (" error=" + v["error"]) if v.get("error") else "",
        v.get("wall_seconds", 0))


def main(argv=None):
    p = argparse.ArgumentParser(prog="jepsen/run", description=__doc__)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="register")
    p.add_argument("--nemesis", choices=sorted(NEMESES), default="mix")
    p.add_argument("--time", type=int, default=40, help="seconds of operations per run")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="the CI tier (15 runs)")
    p.add_argument("--matrix", action="store_true",
                   help="every workload x every nemesis (nightly), --runs times each")
    p.add_argument("--workloads", default=None,
                   help="with --matrix: only these workloads (comma-separated)")
    p.add_argument("--binary", default=DEFAULT_BINARY)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--rate", type=float, default=40.0, help="ops per second, all clients")
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--plant", default=None, help="RAFTKMS_PLANT value for the nodes")
    p.add_argument("--plant-nodes", default=None, help="comma-separated node ids to plant on")
    p.add_argument("--store", default=os.path.join(HERE, "store"))
    p.add_argument("--colocated-clients", action="store_true",
                   help="clients sign with the clock of the node they call (as a client on that "
                   "host would), so nodes skewed beyond the 5-minute TC3 window still serve them")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("jepsen/run needs root (network namespaces, iptables)")
    if not os.path.exists(args.binary):
        sys.exit("no raftkms binary at %s (cargo build, or --binary)" % args.binary)
    atexit.register(_teardown_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    plan = []
    if args.quick:
        plan = list(QUICK)
    elif args.matrix:
        only = args.workloads.split(",") if args.workloads else sorted(WORKLOADS)
        unknown = [w for w in only if w not in WORKLOADS]
        if unknown:
            sys.exit("--workloads: unknown %s (known: %s)" % (", ".join(unknown),
                                                            ", ".join(sorted(WORKLOADS))))
        plan = [(w, n, args.time) for w in sorted(only) for n in sorted(NEMESES)]
    else:
        plan = [(args.workload, args.nemesis, args.time)]
    plan = [x for x in plan for _ in range(args.runs)]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    plant_nodes = [int(x) for x in args.plant_nodes.split(",")] if args.plant_nodes else None
    verdicts = []
    t0 = time.time()
    try:
        for n, (w, nem, secs) in enumerate(plan):
            run_dir = os.path.join(args.store, "%s-%02d-%s-%s" % (stamp, n, w, nem))
            v = run_one(args, w, nem, secs, run_dir, plant=args.plant, plant_nodes=plant_nodes,
                        log=lambda m: print(m, flush=True))
            verdicts.append(v)
            print(summarize(v) + "  " + run_dir, flush=True)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", flush=True)
        return 130
    passed, failed, unknown, status = tally(verdicts)
    print("jepsen: %d passed, %d failed, %d unknown (not passed) in %.0fs" % (
        passed, failed, unknown, time.time() - t0), flush=True)
    return status
