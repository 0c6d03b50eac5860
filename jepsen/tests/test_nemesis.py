"""The nemesis's bookkeeping and the checks of a fault's effect, with fakes (no processes, no
namespaces, no network).

Before this file, ``Nemesis`` recorded a fault's start before applying it, caught every exception
of a fault in ``run`` (an "info" event in the timeline, nothing else), and the runner looked at
neither: a fault that never happened left a PASS. Here a fault whose application raises, or
whose effect is missing, is not recorded and turns the verdict to FAIL (effect missing) or
UNKNOWN (the harness could not act).

Run: python3 -m unittest discover -s jepsen/tests
"""

import argparse
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from rkj import cluster as cluster_mod, runner  # noqa: E402
from rkj.cluster import Cluster, FaultNotApplied, HarnessError, NodeExited  # noqa: E402
from rkj.nemesis import Nemesis, Timeline  # noqa: E402


class FakeHistory:
    """A clock that advances by one on every reading."""

    def __init__(self):
        self.t = 0

    def now(self):
        self.t += 1
        return self.t


class FakeNode:
    def __init__(self, i):
        self.i = i
        self.fiu = None
        self.skew = 0
        self.paused = False

    def alive(self):
        return True


class FakeCluster:
    """Records every call (with the fake time) and raises where a test says so."""

    def __init__(self, history, fail=None):
        self.h = history
        self.nodes = {i: FakeNode(i) for i in (1, 2, 3)}
        self.removed = set()
        self.calls = []
        self.fail = fail or {}  # method name -> exception to raise

    def _do(self, name, *args):
        self.calls.append((self.h.now(), name) + args)
        if name in self.fail:
            raise self.fail[name]

    def leader(self):
        return 1

    def __getattr__(self, name):
        if name in ("kill", "start", "verify_gone", "pause", "resume", "verify_stopped",
                    "partition", "cut_pairs", "verify_cut", "heal_partition", "verify_healed",
                    "verify_clock", "set_latency", "verify_latency", "remove_node",
                    "rejoin_node", "verify_membership", "verify_rewrapped", "retire_root_keys"):
            return lambda *a, **k: self._do(name, *a)
        raise AttributeError(name)

    def rotate_root_key(self, i):
        self._do("rotate_root_key", i)
        return 2

    def write_skew(self, node, secs):
        self._do("write_skew", node.i, secs)
        node.skew = secs

    def power_cut(self, i):
        self._do("power_cut", i)
        return {"generation": 1, "generation_before": 0, "writes_since_last_cut": 10,
                "dropped_bytes": 4096, "dropped_entries": 2}

    def verify_power_cut(self, i, ans):
        self._do("verify_power_cut", i, ans.get("generation"))


def nemesis(faults, fail=None):
    h = FakeHistory()
    c = FakeCluster(h, fail)
    nem = Nemesis(c, Timeline(h), faults, seed=1, log=lambda m: None)
    nem.sleep = lambda secs: False  # no waiting
    return nem, c


def starts(nem):
    return [e for e in nem.tl.events if e["event"] == "start"]


class NemesisBookkeepingTest(unittest.TestCase):
    def test_fault_recorded_only_after_it_took_effect(self):
        nem, c = nemesis(["kill"])
        self.assertTrue(nem.run_fault("kill"))
        (ev,) = starts(nem)
        verified_at = next(t for t, name, *_ in c.calls if name == "verify_gone")
        self.assertGreater(ev["t"], verified_at)
        self.assertLess(ev["requested_t"], verified_at)
        self.assertEqual([e["event"] for e in nem.tl.events], ["start", "stop"])
        self.assertIs(nem.result()["valid"], True)
        self.assertEqual(nem.result()["faults_applied"], 1)

    def test_power_recorded_only_after_the_cut_was_checked(self):
        nem, c = nemesis(["power-all"])
        self.assertTrue(nem.run_fault("power-all"))
        (ev,) = starts(nem)
        checked = [t for t, name, *_ in c.calls if name == "verify_power_cut"]
        self.assertEqual(len(checked), 3)
        self.assertGreater(ev["t"], max(checked))
        dropped = [e for e in nem.tl.events if e["event"] == "dropped"]
        self.assertEqual([e["dropped_bytes"] for e in dropped], [4096] * 3)
        # Every node was killed before the first disk was cut.
        names = [name for _, name, *_ in c.calls if name in ("kill", "power_cut")]
        self.assertEqual(names[:3], ["kill"] * 3)
        self.assertIs(nem.result()["valid"], True)

    def test_root_rotation_recorded_once_the_rewrap_finished_and_undone_by_retiring(self):
        nem, c = nemesis(["root-rotate"])
        self.assertTrue(nem.run_fault("root-rotate"))
        (ev,) = starts(nem)
        names = [name for _, name, *_ in c.calls]
        self.assertEqual(names, ["rotate_root_key", "verify_rewrapped", "retire_root_keys"])
        verified = next(t for t, name, *_ in c.calls if name == "verify_rewrapped")
        self.assertGreater(ev["t"], verified)
        # The re-wrap was checked for the version the rotation installed.
        self.assertEqual(next(a for _, name, *a in c.calls if name == "verify_rewrapped"), [ev["nodes"][0], 2])
        self.assertEqual([e["event"] for e in nem.tl.events], ["start", "stop"])
        self.assertIs(nem.result()["valid"], True)

    def test_root_rotation_whose_rewrap_never_finishes_fails_the_run(self):
        nem, c = nemesis(["root-rotate"],
                         fail={"verify_rewrapped": FaultNotApplied("pending 12 after 60 s")})
        self.assertFalse(nem.run_fault("root-rotate"))
        self.assertEqual(starts(nem), [])
        self.assertIs(nem.result()["valid"], False)
        self.assertNotIn("retire_root_keys", [name for _, name, *_ in c.calls])

    def test_power_cut_that_did_not_happen_fails_the_run(self):
        nem, c = nemesis(["power"], fail={"verify_power_cut": FaultNotApplied("no cut")})
        self.assertFalse(nem.run_fault("power"))
        self.assertEqual(starts(nem), [])
        self.assertIs(nem.result()["valid"], False)

    def test_harness_that_cannot_act_makes_the_run_unknown(self):
        """iptables itself fails: no partition is recorded, the nemesis is UNKNOWN, and so is the
        run although every other checker passed. (The old nemesis logged the exception, after
        having recorded the partition's start; the run passed.)"""
        nem, c = nemesis(["partition"], fail={
            "partition": RuntimeError("iptables -A INPUT failed (4): resource unavailable"),
            "cut_pairs": RuntimeError("iptables -A INPUT failed (4): resource unavailable")})
        self.assertFalse(nem.run_fault("partition"))
        self.assertEqual(starts(nem), [])
        out = nem.result()
        self.assertIsNone(out["valid"])
        self.assertEqual(out["harness_errors"][0]["type"], "harness-error")
        self.assertIn("iptables", out["harness_errors"][0]["error"])
        results = {"register": {"valid": True}, "recovery": {"valid": True}, "nemesis": out}
        self.assertIsNone(runner.overall(results))

    def test_fault_without_effect_fails_the_run(self):
        """kill -9 was sent but the process still runs: not recorded, the run fails."""
        nem, c = nemesis(["kill"], fail={"verify_gone": FaultNotApplied("node 1 still runs")})
        self.assertFalse(nem.run_fault("kill"))
        self.assertEqual(starts(nem), [])
        out = nem.result()
        self.assertIs(out["valid"], False)
        self.assertEqual(out["anomalies"][0]["type"], "fault-not-applied")
        self.assertIs(runner.overall({"key-set": {"valid": True}, "nemesis": out}), False)
        # No restart was attempted for a kill that did not happen.
        self.assertNotIn("start", [name for _, name, *_ in c.calls])

    def test_clock_not_read_by_the_node_fails_the_run(self):
        """The faketime file is written, but the node's clock does not move (libfaketime not
        loaded): no clock fault is recorded; the change is kept for the deletion checker."""
        nem, c = nemesis(["clock-far"],
                         fail={"verify_clock": FaultNotApplied("node 2's clock is not at -864000")})
        self.assertFalse(nem.run_fault("clock-far"))
        self.assertEqual(starts(nem), [])
        self.assertIs(nem.result()["valid"], False)
        self.assertEqual(len(nem.clock_changes), 1)

    def test_undo_refused_is_a_failure_with_the_fault_left_open(self):
        """A removed node the cluster does not let back in: the fault was applied (recorded), its
        undo was not (no stop), and the run fails (the node would also be left out of the final
        checks)."""
        nem, c = nemesis(["membership"],
                         fail={"rejoin_node": FaultNotApplied("join 2 refused")})
        self.assertFalse(nem.run_fault("membership"))
        self.assertEqual([e["event"] for e in nem.tl.events], ["start", "error"])
        out = nem.result()
        self.assertIs(out["valid"], False)
        self.assertEqual(out["anomalies"][0]["type"], "fault-not-undone")
        self.assertEqual(nem.tl.windows()[0][1], None)  # still open

    def test_nemesis_stops_after_a_problem(self):
        nem, c = nemesis(["kill"], fail={"kill": OSError("no such process group")})
        nem.run()  # returns by itself after the first problem
        self.assertEqual(len([1 for _, name, *_ in c.calls if name == "kill"]), 1)
        self.assertIsNone(nem.result()["valid"])

    def test_no_fault_applied_is_unknown(self):
        nem, _ = nemesis(["kill"])
        self.assertIsNone(nem.result()["valid"])
        none, _ = nemesis([])
        self.assertIs(none.result()["valid"], True)

    def test_fsync_node_that_exits_before_the_check_is_started_again(self):
        nem, c = nemesis(["fsync"])
        attempts = []

        def start(i):
            attempts.append(i)
            if len(attempts) < 3:
                raise NodeExited("node %d exited before its libraries could be checked" % i)
        c.start = start
        self.assertTrue(nem.run_fault("fsync"))
        self.assertEqual(len(starts(nem)), 1)
        self.assertEqual(len(attempts), 4)  # 2 exits, the faulty start, the healing restart


class FakeProc:
    def __init__(self, pid=4242, exited=None):
        self.pid = pid
        self.returncode = exited
        self.killed = False

    def poll(self):
        return self.returncode

    def kill(self):
        self.killed = True
        self.returncode = -9

    def wait(self, timeout=None):
        return self.returncode


_TEMP_DIRS = []


def fake_cluster(**kw):
    d = tempfile.mkdtemp(prefix="rkj-test-")
    _TEMP_DIRS.append(d)
    c = Cluster(d, d, 3, "/bin/true", log=lambda m: None, **kw)
    return c


def tearDownModule():
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


class EffectChecksTest(unittest.TestCase):
    def test_node_without_libfaketime_is_not_kept(self):
        """ld.so ignores an LD_PRELOAD library it cannot load; the node must not run on."""
        c = fake_cluster(faketime=True)
        c.PRELOAD_GRACE_S = 0.01
        node = c.nodes[1]
        node.proc = FakeProc()
        c.read_proc = lambda pid: (os.path.realpath("/bin/true"), "7f00 r-xp libc.so.6\n", [])
        with self.assertRaises(FaultNotApplied):
            c.verify_preloads(node)
        self.assertTrue(node.proc.killed)
        c.read_proc = lambda pid: (os.path.realpath("/bin/true"),
                                   "7f00 r-xp " + cluster_mod.FAKETIME_LIB + "\n", [])
        node.proc = FakeProc()
        c.verify_preloads(node)  # loaded: fine

    def test_fiu_needs_its_libraries_and_its_failpoint(self):
        c = fake_cluster(fiu=True)
        c.PRELOAD_GRACE_S = 0.01
        node = c.nodes[2]
        node.fiu = "enable_random name=posix/io/sync/*,probability=0.05"
        maps = "".join("7f00 r-xp %s\n" % lib for lib in cluster_mod.FIU_LIBS)
        node.proc = FakeProc()
        c.read_proc = lambda pid: (os.path.realpath("/bin/true"), maps, [b"PATH=/bin"])
        with self.assertRaises(FaultNotApplied):  # libraries, but no failpoint enabled
            c.verify_preloads(node)
        node.proc = FakeProc()
        c.read_proc = lambda pid: (os.path.realpath("/bin/true"), maps,
                                   [b"FIU_ENABLE=enable_random name=posix/io/sync/*,p=0.05"])
        c.verify_preloads(node)

    def test_node_that_exits_before_the_check(self):
        c = fake_cluster(faketime=True)
        c.nodes[1].proc = FakeProc(exited=1)
        with self.assertRaises(NodeExited):
            c.verify_preloads(c.nodes[1])

    def test_missing_library_is_a_harness_error(self):
        saved = cluster_mod.FAKETIME_LIB
        cluster_mod.FAKETIME_LIB = "/nonexistent/libfaketime.so.1"
        try:
            with self.assertRaises(HarnessError):
                cluster_mod.check_tools(faketime=True)
        finally:
            cluster_mod.FAKETIME_LIB = saved

    def test_partition_rules_must_be_in_place(self):
        c = fake_cluster()
        ip = {i: n.ip for i, n in c.nodes.items()}
        rules = {1: {("INPUT", ip[2]), ("OUTPUT", ip[2]), ("INPUT", ip[3])}, 2: set(), 3: set()}
        c.drop_rules = lambda i: rules[i]
        with self.assertRaises(FaultNotApplied) as cm:
            c.verify_cut([(1, 2), (1, 3)])
        self.assertIn("OUTPUT %s" % ip[3], str(cm.exception))
        rules[1].add(("OUTPUT", ip[3]))
        c.verify_cut([(1, 2), (1, 3)])
        with self.assertRaises(FaultNotApplied):
            c.verify_healed()

    def test_clock_must_be_where_the_nemesis_put_it(self):
        """The probe: a node accepts a request signed at T iff |its clock - T| <= 300 s."""
        import time
        c = fake_cluster(faketime=True)
        node_offset = {1: 0.0}

        def probe(i, signed_at):
            return abs(time.time() + node_offset[i] - signed_at()) <= 300
        c.clock_probe = probe
        with self.assertRaises(FaultNotApplied):  # the node ignored a -100 s skew
            c.verify_clock(1, -100, timeout=0.01)
        with self.assertRaises(FaultNotApplied):  # ... or a +8 day one
            c.verify_clock(1, 8 * 86400, timeout=0.01)
        node_offset[1] = -100.0
        c.verify_clock(1, -100, timeout=0.01)
        c.clock_probe = lambda i, signed_at: None  # never answers: the harness cannot tell
        with self.assertRaises(HarnessError):
            c.verify_clock(1, -100, timeout=0.01)

    def test_power_cut_must_have_dropped_the_page_cache_of_a_disk_in_use(self):
        c = fake_cluster(lazyfs=True)
        c.verify_gone = lambda i: None
        status = {"unsynced_bytes": 0, "unsynced_entries": 0}
        c.disk_status = lambda i: status
        saved = cluster_mod.lazyfs_mounts
        cluster_mod.lazyfs_mounts = lambda: [c.nodes[1].disk]
        try:
            good = {"generation": 3, "generation_before": 2, "writes_since_last_cut": 50}
            c.verify_power_cut(1, good)
            with self.assertRaises(FaultNotApplied):  # lazyfs did not cut
                c.verify_power_cut(1, dict(good, generation=2))
            with self.assertRaises(FaultNotApplied):  # the node wrote nothing since the last cut
                c.verify_power_cut(1, dict(good, writes_since_last_cut=0))
            status["unsynced_bytes"] = 10
            with self.assertRaises(FaultNotApplied):  # something unsynced survived the cut
                c.verify_power_cut(1, good)
            status["unsynced_bytes"] = 0
            cluster_mod.lazyfs_mounts = lambda: []
            with self.assertRaises(FaultNotApplied):  # the disk is not our filesystem
                c.verify_power_cut(1, good)
        finally:
            cluster_mod.lazyfs_mounts = saved

    def test_power_without_lazyfs_or_fuse_is_a_harness_error(self):
        with self.assertRaises(HarnessError):
            fake_cluster().power_cut(1)
        saved = cluster_mod.LAZYFS_PYTHON
        cluster_mod.LAZYFS_PYTHON = "/nonexistent/python"
        try:
            with self.assertRaises(HarnessError):
                cluster_mod.check_tools(lazyfs=True)
        finally:
            cluster_mod.LAZYFS_PYTHON = saved

    def test_latency_proxies_must_carry_traffic(self):
        class P:
            def __init__(self, n):
                self.n = n

            def sent_since_set(self):
                return self.n
        c = fake_cluster(proxy=True)
        c.proxies = {1: P(0), 2: P(0), 3: P(5)}
        with self.assertRaises(FaultNotApplied):
            c.verify_latency(timeout=0.01)
        c.proxies[2].n = 1
        c.verify_latency(timeout=0.01)  # the leader's proxy may stay idle


class VerdictTest(unittest.TestCase):
    def test_unknown_is_not_passed(self):
        vs = [{"valid": True}, {"valid": None}]
        self.assertEqual(runner.tally(vs), (1, 0, 1, 1))
        self.assertEqual(runner.tally([{"valid": True}])[3], 0)
        self.assertEqual(runner.tally([])[3], 1)
        line = runner.summarize({"valid": None, "workload": "deletion", "nemesis": "kill",
                                 "checkers": {"deletion": {"valid": None, "anomaly_count": 0}}})
        self.assertTrue(line.startswith("UNKNOWN"))
        self.assertIn("deletion:unknown", line)

    def run_with_boot_error(self, exc):
        class BootFails:
            def __init__(self, *a, **k):
                pass

            def boot(self):
                raise exc

            def teardown(self):
                pass
        saved = runner.Cluster
        runner.Cluster = BootFails
        try:
            with tempfile.TemporaryDirectory() as d:
                args = argparse.Namespace(seed=1, nodes=3, binary="/bin/true")
                return runner.run_one(args, "register", "kill", 1, os.path.join(d, "run"),
                                      log=lambda m: None)
        finally:
            runner.Cluster = saved

    def test_run_whose_node_lacks_its_library_fails(self):
        v = self.run_with_boot_error(FaultNotApplied("node 1 runs without libfaketime.so.1"))
        self.assertIs(v["valid"], False)

    def test_run_whose_tools_are_missing_is_unknown(self):
        v = self.run_with_boot_error(HarnessError("required tools missing: fiu-run"))
        self.assertIsNone(v["valid"])


if __name__ == "__main__":
    unittest.main()
