"""The audit checker (checkers.check_audit) on small synthetic trails and histories, the
artifacts it reads (rkj/audit.py: copies, the torn tail of an archived trail, the verify
command's report), and the request ids the client notes for the history.

Times are nanoseconds of history time; MS is a millisecond.

Run: python3 -m unittest discover -s jepsen/tests
"""

import json
import os
import shutil
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # test_tls's PKI and server

from rkj import audit, checkers, client  # noqa: E402
from rkj.history import pair  # noqa: E402

MS = 1_000_000
S = 1000 * MS


def call(rid, node, action, code=None, t=None):
    return {"id": rid, "node": node, "action": action, "code": code, "t": t}


def ops_from(spec):
    """spec: (process, f, type, start, end, [call, ...]); a call's t defaults to the end; an
    end of None leaves the op without a completion."""
    events = []
    for p, f, typ, start, end, calls in spec:
        node = calls[0]["node"] if calls else 1
        events.append({"type": "invoke", "process": p, "f": f, "value": None, "node": node,
                       "t": start})
        if end is None:  # no completion: the op stays open (info)
            continue
        reqs = [dict(c, t=end if c["t"] is None else c["t"]) for c in calls]
        ev = {"type": typ, "process": p, "f": f, "value": None, "node": node, "t": end}
        if reqs:
            ev.update(request_id=reqs[-1]["id"], requests=reqs)
        events.append(ev)
    events.sort(key=lambda e: e["t"])
    for i, e in enumerate(events):
        e["index"] = i
    return pair(events)


def rec(seq, rid, node, action, result="Success", write=False):
    return {"v": 1, "seq": seq, "prev": "0" * 64, "hash": "%064x" % (node * 10_000 + seq),
            "at_ms": 1_700_000_000_000 + seq, "node_id": node, "region": "ap-singapore",
            "uin": 1, "principal": "root", "secret_id": "AKID", "source": "10.213.47.254:1",
            "dialect": "tencent", "action": action, "key_ids": ["k"], "request_id": rid,
            "result": result, "consistency": "linearizable", "latency_us": 100,
            "write": write}


def artifacts(trails, verify=None, checkpoints=(), errors=()):
    """trails: {name: (node, [records])}; every trail verified intact unless ``verify``."""
    out = {"trails": {}, "verify": {}, "checkpoints": list(checkpoints), "errors": list(errors),
           "checkpoints_error": None}
    for name, (node, records) in trails.items():
        out["trails"][name] = {"node": node, "wiped": "wiped" in name, "records": records,
                               "bad_lines": 0}
        out["verify"][name] = {"mode": "checkpoints", "status": 0,
                               "report": {"problem": None, "records": len(records),
                                          "checkpoints_checked": 1}}
    out["verify"].update(verify or {})
    return out


def kill(node, at, fault="kill", fid=1):
    """A kill of ``node`` requested at ``at`` and confirmed 5 ms later."""
    return {"t": at + 5 * MS, "event": "start", "fault": fault, "nodes": [node], "id": fid,
            "requested_t": at}


def types(out):
    return sorted(a["type"] for a in out["anomalies"])


# An acknowledged write through node 1, an Encrypt through node 2, a refused Encrypt through
# node 2, and their records.
CREATE = (1, "create", "ok", 0, 10 * MS, [call("r1", 1, "CreateKey")])
ENCRYPT = (2, "encrypt", "ok", 20 * MS, 30 * MS, [call("r2", 2, "Encrypt")])
REFUSED = (3, "encrypt", "ok", 40 * MS, 50 * MS,
           [call("r3", 2, "Encrypt", "ResourceUnavailable.CmkDisabled")])
R1 = rec(1, "r1", 1, "kms:CreateKey", write=True)
R2 = rec(1, "r2", 2, "kms:Encrypt")
R3 = rec(2, "r3", 2, "kms:Encrypt", result="ResourceUnavailable.CmkDisabled")


class AuditCheckerTest(unittest.TestCase):
    def test_clean(self):
        ops = ops_from([CREATE, ENCRYPT, REFUSED])
        out = checkers.check_audit(ops, [], artifacts({"n1": (1, [R1]), "n2": (2, [R2, R3])},
                                                      checkpoints=[{"node_id": 2, "seq": 2,
                                                                    "hash": R3["hash"]}]))
        self.assertIs(out["valid"], True, out["anomalies"])
        self.assertEqual((out["answered_calls"], out["records_found"], out["records_matched"],
                          out["writes_checked"], out["reads_excused"], out["duplicates"],
                          out["missing"], out["checkpoints_checked"]), (3, 3, 3, 1, 0, 0, 0, 1))

    def test_missing_write_record_is_an_anomaly_even_after_a_kill(self):
        """The record of an acknowledged write is synced before the answer: a kill of its node
        right after excuses nothing."""
        ops = ops_from([CREATE, ENCRYPT])
        out = checkers.check_audit(ops, [kill(1, 60 * MS)],
                                   artifacts({"n1": (1, []), "n2": (2, [R2])}))
        self.assertIs(out["valid"], False)
        self.assertEqual(types(out), ["missing-write-record"])
        a = out["anomalies"][0]
        self.assertEqual((a["request_id"], a["node"], a["op"]["f"]), ("r1", 1, "create"))

    def test_missing_read_record_excused_by_a_kill_50ms_later(self):
        ops = ops_from([CREATE, ENCRYPT])
        out = checkers.check_audit(ops, [kill(2, 80 * MS)],
                                   artifacts({"n1": (1, [R1]), "n2": (2, [])}))
        self.assertIs(out["valid"], True, out["anomalies"])
        self.assertEqual(out["reads_excused"], 1)
        self.assertEqual(out["excused_by"], {"kill": 1})

    def test_missing_read_record_without_a_kill(self):
        ops = ops_from([CREATE, ENCRYPT])
        arts = artifacts({"n1": (1, [R1]), "n2": (2, [])})
        for events in ([], [kill(1, 80 * MS)],  # a kill of another node
                       [kill(2, 30 * MS + 1200 * MS)],  # past 100 ms + 1 s
                       [{"t": 35 * MS, "event": "start", "fault": "pause", "nodes": [2],
                         "id": 1, "requested_t": 32 * MS}]):  # a pause loses nothing
            out = checkers.check_audit(ops, events, arts)
            self.assertIs(out["valid"], False, events)
            self.assertEqual(types(out), ["missing-record"], events)
        # A kill before the answer, confirmed after it (bytes in flight) excuses it.
        out = checkers.check_audit(ops, [kill(2, 25 * MS)], arts)
        self.assertIs(out["valid"], True)

    def test_power_loss_and_membership_removal_excuse_reads(self):
        ops = ops_from([CREATE, ENCRYPT])
        arts = artifacts({"n1": (1, [R1]), "n2": (2, [])})
        for fault in ("power", "power-all", "kill-all", "membership"):
            self.assertIs(checkers.check_audit(ops, [kill(2, 500 * MS, fault)], arts)["valid"],
                          True, fault)

    def test_fsync_window_and_the_heal_kill(self):
        """Under fsync a failed sync fails the trail and loses its batch: the whole window
        excuses non-durable records (not a write's); the heal's kill of a node left under
        libfiu too."""
        ops = ops_from([CREATE, ENCRYPT])
        arts = artifacts({"n1": (1, [R1]), "n2": (2, [])})
        fsync = [{"t": 5 * MS, "event": "start", "fault": "fsync", "nodes": [2], "id": 1,
                  "requested_t": 1 * MS},
                 {"t": 9 * S, "event": "stop", "fault": "fsync", "nodes": [2], "id": 1}]
        self.assertIs(checkers.check_audit(ops, fsync, arts)["valid"], True)
        heal = [{"t": 31 * MS, "event": "heal", "fault": "all", "nodes": [], "killed": [2]},
                {"t": 2 * S, "event": "healed", "fault": "all", "nodes": []}]
        self.assertIs(checkers.check_audit(ops, heal, arts)["valid"], True)
        no_kill = [dict(heal[0], killed=[]), heal[1]]
        self.assertIs(checkers.check_audit(ops, no_kill, arts)["valid"], False)
        lost_write = artifacts({"n1": (1, []), "n2": (2, [R2])})
        fsync1 = [dict(e, nodes=[1]) for e in fsync]
        self.assertEqual(types(checkers.check_audit(ops, fsync1, lost_write)),
                         ["missing-write-record"])

    def test_duplicate(self):
        """One request id in two records (here on two nodes' trails): an anomaly, with both
        records and the op."""
        ops = ops_from([CREATE, ENCRYPT])
        out = checkers.check_audit(ops, [], artifacts(
            {"n1": (1, [R1, rec(2, "r2", 1, "kms:Encrypt")]), "n2": (2, [R2])}))
        self.assertIs(out["valid"], False)
        self.assertEqual(types(out), ["duplicate"])
        self.assertEqual(out["duplicates"], 1)
        self.assertEqual(sorted(r["trail"] for r in out["anomalies"][0]["records"]),
                         ["n1", "n2"])
        self.assertEqual(out["anomalies"][0]["op"]["f"], "encrypt")
        # Also within one trail, and for a request that is not in the history.
        out = checkers.check_audit(ops, [], artifacts(
            {"n1": (1, [R1, rec(2, "x", 1, "kms:Encrypt"), rec(3, "x", 1, "kms:Encrypt")]),
             "n2": (2, [R2])}))
        self.assertEqual(types(out), ["duplicate"])

    def test_vacuous(self):
        """No answered call carried a request id (every op timed out, or a client that noted
        none): nothing was checked, UNKNOWN, however many records the trails hold."""
        ops = ops_from([(1, "create", "info", 0, 10 * MS, []),
                        (2, "encrypt", "fail", 20 * MS, 30 * MS, [])])
        out = checkers.check_audit(ops, [], artifacts({"n1": (1, [R1]), "n2": (2, [R2])}))
        self.assertIsNone(out["valid"])
        self.assertEqual(out["answered_calls"], 0)
        self.assertIn("nothing was checked", out["unknown_reasons"][0])
        self.assertIsNone(checkers.check_audit(ops_from([CREATE]), [], None)["valid"])

    def test_record_on_another_node_wrong_result_or_not_durable(self):
        ops = ops_from([CREATE, ENCRYPT, REFUSED])
        cases = {
            "wrong-node": {"n1": (1, [R1, rec(2, "r2", 1, "kms:Encrypt")]), "n2": (2, [R3])},
            "result-mismatch": {"n1": (1, [R1]), "n2": (2, [R2, dict(R3, result="Success")])},
            "write-record-not-durable": {"n1": (1, [dict(R1, write=False)]),
                                         "n2": (2, [R2, R3])},
            "action-mismatch": {"n1": (1, [R1]), "n2": (2, [dict(R2, action="kms:Decrypt"),
                                                            R3])},
        }
        for kind, trails in cases.items():
            out = checkers.check_audit(ops, [], artifacts(trails))
            self.assertEqual(types(out), [kind], kind)
            self.assertEqual(out["anomalies"][0]["record"]["request_id"],
                             {"wrong-node": "r2", "result-mismatch": "r3",
                              "write-record-not-durable": "r1",
                              "action-mismatch": "r2"}[kind])

    def test_every_call_of_a_paged_op_is_checked(self):
        ops = ops_from([(1, "list", "ok", 0, 30 * MS,
                         [call("p1", 1, "ListKeyDetail", t=10 * MS),
                          call("p2", 1, "ListKeyDetail", t=30 * MS)])])
        out = checkers.check_audit(ops, [], artifacts(
            {"n1": (1, [rec(1, "p1", 1, "kms:ListKeyDetail")])}))
        self.assertEqual(types(out), ["missing-record"])
        self.assertEqual(out["anomalies"][0]["request_id"], "p2")
        self.assertEqual((out["answered_ops"], out["answered_calls"]), (1, 2))

    def test_trail_that_does_not_verify(self):
        ops = ops_from([CREATE])
        bad = {"n1": {"mode": "checkpoints", "status": 1,
                      "report": {"problem": {"Edited": {"seq": 1}}, "records": 1}},
               }
        out = checkers.check_audit(ops, [], artifacts({"n1": (1, [R1])}, verify=bad))
        self.assertEqual(types(out), ["trail-not-intact"])
        self.assertEqual(out["anomalies"][0]["problem"], {"Edited": {"seq": 1}})
        # A verify that printed no report (it could not run): nothing verified, UNKNOWN.
        none = {"n1": {"mode": "offline", "status": 1, "report": None, "stderr": "no such"}}
        out = checkers.check_audit(ops, [], artifacts({"n1": (1, [R1])}, verify=none))
        self.assertIsNone(out["valid"])
        self.assertEqual(out["verify"]["n1"], "not verified")
        # The live trail verified, its copy (the artifact) does not: an anomaly too.
        live = {"mode": "checkpoints", "status": 0, "report": {"problem": None, "records": 1}}
        bad_copy = {"n1": dict(live, copy=bad["n1"])}
        out = checkers.check_audit(ops, [], artifacts({"n1": (1, [R1])}, verify=bad_copy))
        self.assertEqual(types(out), ["trail-not-intact"])
        self.assertEqual(out["anomalies"][0]["mode"], "offline (the copy)")
        no_copy = {"n1": dict(live, copy=none["n1"])}
        self.assertIsNone(checkers.check_audit(ops, [], artifacts({"n1": (1, [R1])},
                                                                  verify=no_copy))["valid"])

    def test_checkpoints_name_records_of_a_wiped_and_rejoined_node(self):
        """Node 2 was wiped and joined back under the same id: its checkpoints name records of
        the archived trail and of the new one. Each must be found in one of them."""
        old = [rec(1, "a", 2, "kms:Encrypt"), rec(2, "b", 2, "kms:Encrypt")]
        new = [rec(1, "c", 2, "kms:Encrypt"), rec(2, "d", 2, "kms:Encrypt"),
               rec(3, "e", 2, "kms:Encrypt")]
        new = [dict(r, hash="%064x" % (99_000 + r["seq"])) for r in new]
        cps = [{"node_id": 2, "seq": 2, "hash": old[1]["hash"]},
               {"node_id": 2, "seq": 3, "hash": new[2]["hash"]}]
        ops = ops_from([(1, "encrypt", "ok", 0, MS, [call("a", 2, "Encrypt")]),
                        (2, "encrypt", "ok", 2 * MS, 3 * MS, [call("e", 2, "Encrypt")])])
        arts = artifacts({"n2-wiped-1": (2, old), "n2": (2, new)}, checkpoints=cps)
        out = checkers.check_audit(ops, [], arts)
        self.assertIs(out["valid"], True, out["anomalies"])
        self.assertEqual(out["checkpoints_checked"], 2)
        del arts["trails"]["n2-wiped-1"]
        out = checkers.check_audit(ops, [], arts)
        self.assertEqual(types(out), ["checkpoint-unmatched", "missing-record"])

    def test_a_trail_the_harness_could_not_copy_is_unknown_not_missing(self):
        ops = ops_from([CREATE, ENCRYPT])
        out = checkers.check_audit(ops, [], artifacts(
            {"n1": (1, [R1])}, errors=[{"node": 2, "error": "copy failed"}]))
        self.assertIsNone(out["valid"])
        self.assertEqual(out["unchecked"], 1)

    def test_absent_trail_of_a_member_is_every_record_missing(self):
        ops = ops_from([CREATE, ENCRYPT])
        arts = artifacts({"n1": (1, [R1]), "n2": (2, [])})
        arts["trails"]["n2"]["absent"] = True
        self.assertEqual(types(checkers.check_audit(ops, [], arts)), ["missing-record"])


class UnansweredWritesTest(unittest.TestCase):
    """A create whose answer never came (timeout: no request id) but whose alias the final list
    shows took effect: the node it was sent to ran it and must have recorded it."""

    def history(self, node=2):
        ops = ops_from([(1, "create", "info", 0, None, []),
                        (2, "final-list", "ok", 20 * S, 21 * S, [call("f", 1, "ListKeyDetail")])])
        create = next(o for o in ops if o.f == "create")
        create.value, create.node = {"alias": "a-1"}, node
        final = next(o for o in ops if o.f == "final-list")
        final.result = {"aliases": ["a-1"], "key_ids": {"a-1": "K1"}}
        return ops

    def trails(self, n2):
        return artifacts({"n1": (1, [rec(1, "f", 1, "kms:ListKeyDetail")]), "n2": (2, n2)})

    def test_recorded(self):
        created = dict(rec(1, "lost", 2, "kms:CreateKey", write=True), key_ids=["K1"])
        out = checkers.check_audit(self.history(), [], self.trails([created]))
        self.assertIs(out["valid"], True, out["anomalies"])
        self.assertEqual((out["unanswered_writes_applied"], out["unanswered_writes_recorded"]),
                         (1, 1))

    def test_unrecorded_is_an_anomaly_unless_its_node_was_killed(self):
        out = checkers.check_audit(self.history(), [], self.trails([]))
        self.assertEqual(types(out), ["applied-write-unrecorded"])
        self.assertEqual(out["anomalies"][0]["key_id"], "K1")
        out = checkers.check_audit(self.history(), [kill(2, 3 * S)], self.trails([]))
        self.assertIs(out["valid"], True)
        self.assertEqual(out["unanswered_writes_excused"], 1)
        # A kill of another node, or one long after the request, excuses nothing.
        for ev in (kill(1, 3 * S), kill(2, 15 * S)):
            self.assertEqual(types(checkers.check_audit(self.history(), [ev],
                                                        self.trails([]))),
                             ["applied-write-unrecorded"])

    def test_a_schedule_seen_pending(self):
        ops = ops_from([(1, "schedule", "info", 0, None, []),
                        (2, "describe", "ok", 20 * S, 21 * S, [call("f", 1, "DescribeKey")])])
        sched = next(o for o in ops if o.f == "schedule")
        sched.value, sched.node = {"key": "K9", "days": 7}, 2
        desc = next(o for o in ops if o.f == "describe")
        desc.value, desc.result = {"key": "K9"}, {"state": "PendingDelete"}
        self.assertEqual([(a, k) for _, a, k in checkers.applied_unanswered_writes(ops)],
                         [("ScheduleKeyDeletion", "K9")])
        arts = artifacts({"n1": (1, [rec(1, "f", 1, "kms:DescribeKey")]), "n2": (2, [])})
        self.assertEqual(types(checkers.check_audit(ops, [], arts)),
                         ["applied-write-unrecorded"])
        desc.result = {"state": "Disabled"}  # not seen scheduled: nothing to say
        self.assertEqual(checkers.applied_unanswered_writes(ops), [])


class WithheldAnswersTest(unittest.TestCase):
    """A node whose audit trail failed (fsync) refuses what it cannot record with InternalError
    and writes no record: such an answer is not the node's verdict on a ciphertext."""

    FSYNC = [{"t": 5 * MS, "event": "start", "fault": "fsync", "nodes": [2], "id": 1,
              "requested_t": 1 * MS},
             {"t": 9 * S, "event": "stop", "fault": "fsync", "nodes": [2], "id": 1}]

    def history(self):
        enc = (1, "encrypt", "ok", 0, 10 * MS, [call("e", 1, "Encrypt")])
        dec = (2, "decrypt", "fail", 20 * MS, 30 * MS, [call("d", 2, "Decrypt", "InternalError")])
        ops = ops_from([enc, dec])
        ops[0].value = {"key": "k", "pt": "p"}
        ops[0].result = {"blob": "B", "version": 1}
        ops[1].value = {"key": "k", "blob": "B", "pt": "p"}
        ops[1].error = "InternalError"
        return ops

    def test_unrecorded_internal_error_under_fsync_is_withheld(self):
        ops = self.history()
        arts = artifacts({"n1": (1, [rec(1, "e", 1, "kms:Encrypt")]), "n2": (2, [])})
        self.assertEqual(checkers.check_durability(ops)["anomaly_count"], 1)
        withheld = checkers.audit_withheld(ops, self.FSYNC, arts)
        self.assertEqual(withheld, {"d"})
        self.assertEqual(checkers.mark_audit_withheld(ops, withheld), 1)
        out = checkers.check_durability(ops)
        self.assertIs(out["valid"], True)
        self.assertEqual(out["withheld_by_audit"], 1)
        self.assertEqual(checkers.check_audit(ops, self.FSYNC, arts)["answers_withheld"], 1)

    def test_recorded_or_outside_fsync_is_an_answer(self):
        ops = self.history()
        recorded = artifacts({"n1": (1, [rec(1, "e", 1, "kms:Encrypt")]),
                              "n2": (2, [rec(1, "d", 2, "kms:Decrypt", "InternalError")])})
        self.assertEqual(checkers.audit_withheld(ops, self.FSYNC, recorded), set())
        unrecorded = artifacts({"n1": (1, [rec(1, "e", 1, "kms:Encrypt")]), "n2": (2, [])})
        self.assertEqual(checkers.audit_withheld(ops, [kill(2, 40 * MS)], unrecorded), set())
        other_node = [dict(e, nodes=[1]) for e in self.FSYNC]
        self.assertEqual(checkers.audit_withheld(ops, other_node, unrecorded), set())
        self.assertEqual(checkers.audit_withheld(ops, self.FSYNC, None), set())


class WithheldAfterRecordTest(unittest.TestCase):
    """The record of a write is written with the write's result, then synced; a failed sync fails
    the trail and the answer is withheld (InternalError). A kill before the trail is cut back
    leaves the line on disk: excused only when the node's log names the request and the node
    was under an fsync fault."""

    FSYNC = WithheldAnswersTest.FSYNC

    def check(self, events, logged, node=2, action="RotateKey", write=True):
        ops = ops_from([(1, "rotate", "info", 20 * MS, 30 * MS,
                         [call("w", node, action, "InternalError")])])
        arts = artifacts({"n%d" % node: (node, [rec(1, "w", node, "kms:" + action,
                                                     write=write)])})
        arts["withheld_logged"] = logged
        return checkers.check_audit(ops, events, arts)

    def test_logged_withheld_under_fsync_is_excused(self):
        out = self.check(self.FSYNC, {2: {"w"}})
        self.assertIs(out["valid"], True, out["anomalies"])
        self.assertEqual(out["withheld_after_record"], 1)

    def test_otherwise_a_result_mismatch(self):
        self.assertEqual(types(self.check(self.FSYNC, {})), ["result-mismatch"])
        self.assertEqual(types(self.check(self.FSYNC, {1: {"w"}})), ["result-mismatch"])
        self.assertEqual(types(self.check([kill(2, 25 * MS)], {2: {"w"}})),
                         ["result-mismatch"])
        late = [dict(e, t=e["t"] + 5 * S, requested_t=e.get("requested_t", 0) + 5 * S)
                for e in self.FSYNC]
        self.assertEqual(types(self.check(late, {2: {"w"}})), ["result-mismatch"])
        # A read's record is not synced before its answer: no such excuse.
        self.assertEqual(types(self.check(self.FSYNC, {2: {"w"}}, action="Encrypt",
                                          write=False)), ["result-mismatch"])
        self.assertEqual(types(self.check(self.FSYNC, {2: {"w"}}, write=False)),
                         ["result-mismatch"])

    def test_the_request_ids_come_from_the_node_logs(self):
        d = tempfile.mkdtemp(prefix="rkj-withheld-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "node2.log"), "w", encoding="utf-8") as f:
            f.write('node=2 region=r 2026-12-05T13:50:01Z ERROR audit trail failed: the answer '
                    'is withheld error=audit trail unavailable: cannot write request_id="ab-1"\n'
                    'node=2 region=r 2026-12-05T13:50:02Z ERROR audit trail failed: answered '
                    'unrecorded request_id="ab-2"\n')
        with open(os.path.join(d, "node3.log"), "w", encoding="utf-8") as f:
            f.write("INFO serving\n")
        with open(os.path.join(d, "nemesis.log"), "w", encoding="utf-8") as f:
            f.write('the answer is withheld request_id="x"\n')
        self.assertEqual(audit.withheld_in_logs(d), {2: {"ab-1"}, 3: set()})


class LossWindowsTest(unittest.TestCase):
    def test_windows_from_the_timeline(self):
        events = [kill(1, 10), {"t": 20, "event": "stop", "fault": "kill", "nodes": [1],
                                "id": 1},
                  {"t": 30, "event": "start", "fault": "kill-all", "nodes": [1, 2], "id": 2,
                   "requested_t": 28},
                  {"t": 40, "event": "start", "fault": "partition", "nodes": [1, 2, 3],
                   "id": 3, "requested_t": 39},
                  {"t": 50, "event": "start", "fault": "fsync", "nodes": [3], "id": 4,
                   "requested_t": 45},
                  {"t": 70, "event": "stop", "fault": "fsync", "nodes": [3], "id": 4},
                  {"t": 80, "event": "start", "fault": "fsync", "nodes": [2], "id": 5,
                   "requested_t": 75}]
        w = checkers.audit_loss_windows(events, t_end=100)
        self.assertEqual(w, {1: [(10, 10 + 5 * MS, "kill"), (28, 30, "kill-all")],
                             2: [(28, 30, "kill-all"), (75, 100, "fsync")],
                             3: [(45, 70, "fsync")]})


class ArtifactsTest(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="rkj-audit-test-")
        self.addCleanup(shutil.rmtree, self.d, True)

    def write_trail(self, d, lines, tail=b""):
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "seg-%020d.jsonl" % 1), "wb") as f:
            f.write(b"".join(json.dumps(x).encode() + b"\n" for x in lines) + tail)
        with open(os.path.join(d, "README"), "w", encoding="utf-8") as f:
            f.write("not a segment\n")

    def test_copy_read_and_torn_tail(self):
        src = os.path.join(self.d, "src")
        self.write_trail(src, [R1, R2], tail=b'{"v":1,"seq":3,"pre')
        dst = os.path.join(self.d, "run", "audit", "n1-wiped-1")
        names = audit.copy_trail(src, dst, settle_s=0)
        self.assertEqual(names, ["seg-%020d.jsonl" % 1])
        self.assertEqual(os.listdir(dst), names)  # segments only
        records, bad = audit.read_trail(dst)
        self.assertEqual((len(records), bad), (2, 1))
        self.assertEqual(audit.cut_torn_tail(dst), len(b'{"v":1,"seq":3,"pre'))
        self.assertEqual(audit.read_trail(dst), (records, 0))
        self.assertEqual(audit.cut_torn_tail(dst), 0)
        self.assertEqual(records[1]["_line"], 2)

    def test_load_reads_the_manifest_and_every_trail(self):
        run = os.path.join(self.d, "run")
        self.write_trail(os.path.join(run, "audit", "n1"), [R1])
        manifest = {"trails": {"n1": {"node": 1, "wiped": False},
                               "n3": {"node": 3, "wiped": False, "absent": True}},
                    "verify": {}, "checkpoints": [], "errors": []}
        with open(os.path.join(run, "audit", "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f)
        arts = audit.load(run)
        self.assertEqual([r["request_id"] for r in arts["trails"]["n1"]["records"]], ["r1"])
        self.assertEqual(arts["trails"]["n3"]["records"], [])
        self.assertIsNone(audit.load(self.d))

    def fake_binary(self, stdout, status):
        path = os.path.join(self.d, "raftkms")
        with open(path, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\necho \"$@\" > %s/args\nprintf '%%s' '%s'\nexit %d\n" % (
                self.d, stdout, status))
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
        return path

    def test_run_verify_reads_the_report(self):
        report = json.dumps({"problem": {"Missing": {"after_seq": 3, "next_seq": 5}},
                             "records": 9})
        res = audit.run_verify([self.fake_binary(report, 1), "audit", "verify", "--offline"])
        self.assertEqual((res["status"], res["mode"]), (1, "offline"))
        self.assertEqual(res["report"]["records"], 9)
        res = audit.run_verify([self.fake_binary("", 1), "audit", "verify"])
        self.assertIsNone(res["report"])
        self.assertEqual(res["mode"], "checkpoints")

    def test_verify_command_carries_the_admin_connection(self):
        class FakeCluster:
            binary = "/bin/raftkms"
            cluster_id = "rkj-1"
            ca_file = "/tls/ca.pem"
            nodes = {2: type("N", (), {"raft": "10.213.47.2:31091"})()}

            def admin_cert(self):
                return "/tls/admin-jepsen.pem", "/tls/admin-jepsen.key"
        cmd = audit.verify_command(FakeCluster(), "/run/audit/n1", 1, via=2)
        self.assertEqual(cmd, ["/bin/raftkms", "audit", "verify", "--dir", "/run/audit/n1",
                               "--node-id", "1", "--json", "--node", "10.213.47.2:31091",
                               "--cluster-id", "rkj-1", "--admin-cert",
                               "/tls/admin-jepsen.pem", "--admin-key", "/tls/admin-jepsen.key",
                               "--cluster-ca", "/tls/ca.pem"])
        self.assertEqual(audit.verify_command(FakeCluster(), "/t", 1)[-1], "--offline")


class HistoryFieldsTest(unittest.TestCase):
    def test_answered_calls_become_history_fields(self):
        """The runner turns the calls the client noted into the completion's ``request_id``
        and ``requests`` (node by API address, time in history time)."""
        from rkj import runner

        class Node:
            def __init__(self, api):
                self.api = api
        cluster = type("C", (), {"nodes": {1: Node("10.0.0.1:1"), 2: Node("10.0.0.2:1")}})()
        history = type("H", (), {"t0": 1000})()
        ctx = runner.Ctx(cluster, history, 0, None)
        self.assertIsNone(ctx.answered_calls())
        client.capture_calls()
        client._note_call("a", "10.0.0.2:1", "ListKeyDetail", None)
        client._note_call(None, "10.0.0.2:1", "ListKeyDetail", None)  # no RequestId: not noted
        client._note_call("b", "10.0.0.2:1", "ListKeyDetail", "InternalError")
        out = ctx.answered_calls()
        self.assertEqual(out["request_id"], "b")
        self.assertEqual([(r["id"], r["node"], r["action"], r["code"]) for r in out["requests"]],
                         [("a", 2, "ListKeyDetail", None), ("b", 2, "ListKeyDetail",
                                                            "InternalError")])
        self.assertTrue(all(r["t"] > 0 for r in out["requests"]))


@unittest.skipUnless(shutil.which("openssl"), "no openssl")
class ClientNotesRequestIdsTest(unittest.TestCase):
    """The client notes the RequestId of every answered call, success or Tencent error, on the
    thread that made it; a call without an answer has none."""

    @classmethod
    def setUpClass(cls):
        import test_tls
        cls.tls = test_tls
        cls.pki = test_tls.make_pki(test_tls.temp_dir())

    def test_success_and_error_are_noted_transport_failures_are_not(self):
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.pki["server"])
        srv, addr = self.tls.serve(ctx)
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        c = client.KmsClient(addr, "ap-x", "AKID", "key", client.tls_context(self.pki["ca"]),
                             timeout=3.0)
        client.capture_calls()
        srv.answer = (200, {"Response": {"RequestId": "ok-1", "KeyId": "k"}})
        r = c.call("CreateKey", {}, write=True)
        self.assertEqual((r.kind, r.request_id), ("ok", "ok-1"))
        srv.answer = (200, {"Response": {"Error": {"Code": "InternalError", "Message": "m"},
                                         "RequestId": "err-1"}})
        r = c.call("CreateKey", {}, write=True)
        self.assertEqual((r.kind, r.code, r.request_id), ("info", "InternalError", "err-1"))
        srv.answer = (502, {"nothing": 1})
        self.assertIsNone(c.call("Encrypt", {}, write=False).request_id)
        calls = client.captured_calls()
        self.assertEqual([(x["request_id"], x["action"], x["code"], x["endpoint"])
                          for x in calls],
                         [("ok-1", "CreateKey", None, addr),
                          ("err-1", "CreateKey", "InternalError", addr)])
        self.assertEqual(client.captured_calls(), [])  # noting stopped
        srv.answer = (200, {"Response": {"RequestId": "later"}})
        c.call("Encrypt", {}, write=False)
        self.assertEqual(client.captured_calls(), [])


if __name__ == "__main__":
    unittest.main()
