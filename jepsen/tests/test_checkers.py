"""Unit tests of the checkers on hand-made histories (run: python3 -m unittest discover jepsen/tests).

Times are small integers; ``None`` as an end means the op's outcome is unknown (info).
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from rkj import checkers, wgl  # noqa: E402
from rkj.history import History, pair  # noqa: E402


def ops_from(spec):
    """spec: (process, f, value, type, result, start, end)."""
    events = []
    for p, f, value, typ, result, start, end in spec:
        events.append({"type": "invoke", "process": p, "f": f, "value": value, "node": 1,
                       "t": start})
        if end is not None or typ != "info":
            ev = {"type": typ, "process": p, "f": f, "value": value, "node": 1,
                  "t": end if end is not None else start}
            if result is not None:
                ev["value"] = result
            events.append(ev)
    events.sort(key=lambda e: e["t"])
    for i, e in enumerate(events):
        e["index"] = i
    return pair(events)


K = {"key": "k"}


def w(p, f, start, end, typ="ok", desc=None):
    v = dict(K)
    if desc is not None:
        v["desc"] = desc
    return (p, f, v, typ, None, start, end)


def rd(p, start, end, enabled, desc="", typ="ok"):
    return (p, "describe", K, typ, {"enabled": enabled, "desc": desc}, start, end)


def enc(p, start, end, enabled, typ="ok"):
    return (p, "encrypt", K, typ, {"enabled": enabled}, start, end)


def lin(spec):
    return wgl.check(ops_from(spec), wgl.KeyStateModel(), wgl.is_read).valid


class WglTest(unittest.TestCase):
    def test_sequential_history_is_linearizable(self):
        self.assertTrue(lin([w(1, "disable", 0, 1), rd(2, 2, 3, False),
                             w(1, "enable", 4, 5), enc(2, 6, 7, True)]))

    def test_stale_read_after_acknowledged_write_is_not(self):
        self.assertFalse(lin([w(1, "disable", 0, 1), rd(2, 2, 3, True)]))

    def test_concurrent_write_may_order_either_way(self):
        # The read overlaps the disable: it may see before or after.
        self.assertTrue(lin([w(1, "disable", 0, 10), rd(2, 1, 2, True), rd(3, 3, 4, False)]))

    def test_no_going_back_after_a_read_saw_the_new_value(self):
        # Once one read saw Disabled, a later read (in real time) cannot see Enabled again.
        self.assertFalse(lin([w(1, "disable", 0, 10), rd(2, 1, 2, False), rd(3, 3, 4, True)]))

    def test_unknown_write_may_take_effect_late(self):
        # An info disable (never completed) may take effect at any time after its invocation.
        self.assertTrue(lin([w(1, "disable", 0, None, typ="info"), rd(2, 5, 6, True),
                             rd(3, 100, 101, False)]))

    def test_unknown_write_may_never_take_effect(self):
        self.assertTrue(lin([w(1, "disable", 0, None, typ="info"), rd(2, 100, 101, True)]))

    def test_unknown_write_cannot_take_effect_before_invocation(self):
        self.assertFalse(lin([rd(2, 0, 1, False), w(1, "disable", 5, None, typ="info")]))

    def test_unknown_write_takes_effect_once(self):
        # Unique descriptions: d1 (unknown) then d2 (ok) then a read of d1 again is impossible
        # if another read saw d2 in between... d1 could still land after d2: allowed once.
        self.assertTrue(lin([w(1, "set-desc", 0, None, "info", "d1"), w(2, "set-desc", 1, 2,
                                                                         desc="d2"),
                             rd(3, 3, 4, True, "d2"), rd(3, 5, 6, True, "d1")]))
        self.assertFalse(lin([w(1, "set-desc", 0, None, "info", "d1"),
                              w(2, "set-desc", 1, 2, desc="d2"),
                              rd(3, 3, 4, True, "d1"), rd(3, 5, 6, True, "d2"),
                              rd(3, 7, 8, True, "d1")]))

    def test_failed_write_did_not_happen(self):
        self.assertFalse(lin([w(1, "disable", 0, 1, typ="fail"), rd(2, 2, 3, False)]))

    def test_write_applied_twice_is_caught(self):
        # d1 acknowledged, then d2 acknowledged, then d1 shows up again: a duplicate apply.
        self.assertFalse(lin([w(1, "set-desc", 0, 1, desc="d1"), w(2, "set-desc", 2, 3, desc="d2"),
                              rd(3, 4, 5, True, "d2"), rd(3, 6, 7, True, "d1")]))

    def test_failed_and_unknown_reads_are_ignored(self):
        self.assertTrue(lin([w(1, "disable", 0, 1), rd(2, 2, 3, True, typ="fail"),
                             (4, "describe", K, "info", None, 2, None)]))

    def test_many_concurrent_ops_stay_cheap(self):
        spec = []
        t = 0
        for i in range(150):
            spec.append(w(i % 5, "set-desc", t, t + 7, desc="d%d" % i))
            t += 2
        spec.append(rd(99, t + 10, t + 11, True, "d149"))
        res = wgl.check(ops_from(spec), wgl.KeyStateModel(), wgl.is_read, budget=200_000)
        self.assertTrue(res.valid)


    def test_many_unknown_writes_stay_cheap(self):
        # 40 unknown enables/disables and reads that flip: linearizable, found without blowup.
        spec = [w(100 + i, "disable" if i % 2 else "enable", i, None, typ="info")
                for i in range(40)]
        spec += [rd(1, 50 + 2 * j, 51 + 2 * j, j % 2 == 0) for j in range(20)]
        res = wgl.check(ops_from(spec), wgl.KeyStateModel(), wgl.is_read, budget=200_000)
        self.assertTrue(res.valid)
        # ... and a read before any of them were invoked still cannot see them.
        spec2 = [rd(1, 0, 1, False)] + [w(100 + i, "disable", 5 + i, None, typ="info")
                                        for i in range(30)]
        res = wgl.check(ops_from(spec2), wgl.KeyStateModel(), wgl.is_read, budget=200_000)
        self.assertFalse(res.valid)


class CheckerTest(unittest.TestCase):
    def test_register_checker_names_the_key(self):
        out = checkers.check_register(ops_from([w(1, "disable", 0, 1), rd(2, 2, 3, True)]))
        self.assertFalse(out["valid"])
        self.assertEqual(out["anomalies"][0]["key"], "k")

    def test_encrypt_after_disable(self):
        bad = ops_from([w(1, "disable", 0, 1), enc(2, 2, 3, True)])
        self.assertFalse(checkers.check_encrypt_after_disable(bad)["valid"])
        # An enable in flight in between explains it.
        ok = ops_from([w(1, "disable", 0, 1), w(3, "enable", 1, None, typ="info"),
                       enc(2, 2, 3, True)])
        self.assertTrue(checkers.check_encrypt_after_disable(ok)["valid"])
        # A concurrent enable whose answer arrived just before the disable's may still have
        # taken effect after it (seen in a latency run: answers 0.2 ms apart, both via node 1);
        # the register checker agrees that this history is linearizable.
        raced = [w(1, "disable", 0, 100), w(3, "enable", 10, 99), enc(2, 200, 300, True)]
        self.assertTrue(checkers.check_encrypt_after_disable(ops_from(raced))["valid"])
        self.assertTrue(lin(raced))
        # An enable that ended before the disable began explains nothing.
        early = [w(3, "enable", 0, 5), w(1, "disable", 10, 100), enc(2, 200, 300, True)]
        self.assertFalse(checkers.check_encrypt_after_disable(ops_from(early))["valid"])
        self.assertFalse(lin(early))

    def test_set_lost_unexpected_and_stale(self):
        spec = [(1, "create", {"alias": "a"}, "ok", {"key_id": "1"}, 0, 1),
                (2, "create", {"alias": "b"}, "ok", {"key_id": "2"}, 0, 1),
                (3, "create", {"alias": "c"}, "info", None, 0, None),
                (4, "list", None, "ok", {"aliases": ["a"]}, 2, 3),
                (5, "final-list", None, "ok", {"aliases": ["a", "c", "z"]}, 10, 11)]
        out = checkers.check_set(ops_from(spec))
        types = sorted(a["type"] for a in out["anomalies"])
        self.assertEqual(types, ["lost", "stale-read", "unexpected"])
        self.assertEqual(out["recovered"], 1)
        good = [(1, "create", {"alias": "a"}, "ok", {"key_id": "1"}, 0, 1),
                (2, "create", {"alias": "b"}, "fail", None, 0, 1),
                (5, "final-list", None, "ok", {"aliases": ["a"]}, 10, 11)]
        self.assertTrue(checkers.check_set(ops_from(good))["valid"])

    def test_rotation_bounds(self):
        def e(p, s, t, v):
            return (p, "encrypt", {"key": "k", "pt": "x"}, "ok", {"version": v, "blob": "b%d" % p},
                    s, t)
        ok = [(1, "rotate", K, "ok", None, 0, 1), e(2, 2, 3, 2),
              (1, "rotate", K, "info", None, 4, None), e(3, 5, 6, 3), e(2, 7, 8, 3)]
        self.assertTrue(checkers.check_rotation(ops_from(ok))["valid"])
        old = [(1, "rotate", K, "ok", None, 0, 1), e(2, 2, 3, 1)]
        self.assertFalse(checkers.check_rotation(ops_from(old))["valid"])
        nowhere = [(1, "rotate", K, "fail", None, 0, 1), e(2, 2, 3, 2)]
        self.assertFalse(checkers.check_rotation(ops_from(nowhere))["valid"])
        back = [(1, "rotate", K, "info", None, 0, None), e(2, 2, 3, 2), e(3, 4, 5, 1)]
        self.assertFalse(checkers.check_rotation(ops_from(back))["valid"])

    def test_durability(self):
        spec = [(1, "encrypt", {"key": "k", "pt": "p"}, "ok", {"version": 1, "blob": "B"}, 0, 1),
                (2, "final-decrypt", {"key": "k", "blob": "B", "pt": "p"}, "ok", {"pt": "p"}, 5, 6),
                (3, "final-decrypt", {"key": "k", "blob": "B", "pt": "p"}, "fail", None, 5, 6)]
        ops = ops_from(spec)
        ops[-1].error = "InvalidParameterValue.InvalidCiphertext"
        out = checkers.check_durability(ops)
        self.assertEqual([a["type"] for a in out["anomalies"]], ["lost-ciphertext"])

    def test_durability_of_hosted_data_keys(self):
        gen = (1, "generate-data-key", {"key": "k", "name": "n"}, "ok", {"blob": "D"}, 0, 1)
        read = {"key": "k", "blob": "D", "pt": "p"}
        ok = [gen, (2, "read-data-key", read, "ok", {"pt": "p"}, 2, 3),
              (3, "final-read-data-key", read, "ok", {"pt": "p"}, 5, 6)]
        out = checkers.check_durability(ops_from(ok))
        self.assertTrue(out["valid"])
        self.assertEqual((out["acknowledged_encrypts"], out["final_decrypts_ok"]), (1, 1))
        # Another plaintext, a data key a node no longer has, a final read that fails, and a
        # mid-run refusal after the acknowledgement are each an anomaly.
        wrong = [gen, (2, "read-data-key", read, "ok", {"pt": "q"}, 2, 3)]
        self.assertEqual([a["type"] for a in checkers.check_durability(ops_from(wrong))["anomalies"]],
                         ["wrong-plaintext"])
        for f, code, kind in (("final-read-data-key", "ResourceUnavailable.DataKeyNotFound",
                               "lost-ciphertext"),
                              ("read-data-key", "ResourceUnavailable.DataKeyNotFound",
                               "lost-ciphertext"),
                              ("final-read-data-key", "InternalError", "final-decrypt-failed"),
                              ("read-data-key", "ResourceUnavailable.DataKeyDisabled",
                               "decrypt-refused")):
            ops = ops_from([gen, (2, f, read, "fail", None, 2, 3)])
            ops[-1].error = code
            self.assertEqual([a["type"] for a in checkers.check_durability(ops)["anomalies"]],
                             [kind], (f, code))
        # A read that began before the GenerateDataKey was acknowledged may miss it.
        early = ops_from([gen, (2, "read-data-key", read, "fail", None, 0, 3)])
        early[-1].error = "ResourceUnavailable.DataKeyNotFound"
        self.assertTrue(checkers.check_durability(early)["valid"])

    def test_stale_reads(self):
        def sr(p, s, t, desc, lag):
            return (p, "stale-describe", K, "ok", {"enabled": True, "desc": desc,
                                                   "contact_ms": lag}, s, t)
        ms = 1_000_000
        base = [w(1, "set-desc", 0, 1 * ms, desc="d1"), w(1, "set-desc", 2 * ms, 3 * ms,
                                                           desc="d2")]
        # Reporting a 5 s lag while showing d1 (superseded at 3 ms) is honest.
        self.assertTrue(checkers.check_stale_reads(ops_from(base + [
            sr(2, 4000 * ms, 4001 * ms, "d1", 5000)]))["valid"])
        # Claiming 10 ms of lag 4 s later while showing d1 is not.
        out = checkers.check_stale_reads(ops_from(base + [sr(2, 4000 * ms, 4001 * ms, "d1", 10)]))
        self.assertEqual(out["anomalies"][0]["type"], "lag-dishonest")
        out = checkers.check_stale_reads(ops_from(base + [sr(2, 4000 * ms, 4001 * ms, "zz", 10)]))
        self.assertEqual(out["anomalies"][0]["type"], "state-never-existed")

    def test_deletion(self):
        sched = (1, "schedule", {"key": "k", "days": 7}, "ok", None, 0, 1)
        gone = (2, "describe", K, "ok", {"state": "Gone"}, 10, 20)

        def wall(t):
            return 1000.0 + t
        ops = ops_from([sched, gone])
        self.assertFalse(checkers.check_deletion(ops, [], wall)["valid"])
        # A node's clock 8 days ahead before the read: legitimate.
        self.assertTrue(checkers.check_deletion(ops, [(5, 2, 8 * 86400)], wall)["valid"])
        # ... but not if the bump came after the read.
        self.assertFalse(checkers.check_deletion(ops, [(25, 2, 8 * 86400)], wall)["valid"])

    def test_convergence(self):
        same = {1: {"applied_index": 5, "digest": "x"}, 2: {"applied_index": 5, "digest": "x"}}
        self.assertTrue(checkers.check_convergence(same)["valid"])
        diff = {1: {"applied_index": 5, "digest": "x"}, 2: {"applied_index": 5, "digest": "y"}}
        self.assertFalse(checkers.check_convergence(diff)["valid"])


DENIED = "AuthFailure.UnauthorizedOperation"


def policy_ops(spec):
    """spec: (process, f, type, start, end[, error]) of revoke / grant / encrypt ops; an end of
    None is an op that never completed (info)."""
    events = []
    for p, f, typ, start, end, *error in spec:
        value = {"key": "k"} if f == "encrypt" else {"policy": "toggle"}
        events.append({"type": "invoke", "process": p, "f": f, "value": value, "node": 1,
                       "t": start})
        if end is not None:
            ev = {"type": typ, "process": p, "f": f, "value": value, "node": 1, "t": end}
            if error:
                ev["error"] = error[0]
            events.append(ev)
    events.sort(key=lambda e: e["t"])
    for i, e in enumerate(events):
        e["index"] = i
    return pair(events)


def denied(p, start, end):
    return (p, "encrypt", "fail", start, end, DENIED)


def allowed(p, start, end):
    return (p, "encrypt", "ok", start, end)


class PolicyRevocationTest(unittest.TestCase):
    def check(self, spec):
        return checkers.check_policy_revocation(policy_ops(spec))

    def test_clean_history_passes(self):
        out = self.check([
            allowed(1, 0, 5),
            ("a0", "revoke", "ok", 10, 20),
            allowed(2, 12, 25),   # concurrent with the revoke: either way
            allowed(3, 15, 18),   # completed before the revoke was acknowledged
            denied(1, 21, 22),
            denied(2, 30, 31),
            ("a0", "grant", "ok", 40, 50),
            allowed(1, 38, 45),   # completed after the grant was invoked: it may have seen it
            denied(3, 42, 44),    # the grant may not have taken effect yet
            allowed(2, 51, 52),
            ("a0", "revoke", "ok", 60, 70),
            denied(3, 71, 72),
            (4, "encrypt", "fail", 73, 74, "transport.refused"),
            (5, "encrypt", "info", 75, None),  # unknown: never judged
        ])
        self.assertIs(out["valid"], True, out)
        self.assertEqual(out["windows"], 2)
        # Inside a window: 21-22, 30-31 (first), 71-72 and 73-74 (second, never ends).
        self.assertEqual(out["encrypts_in_windows"], 4)
        self.assertEqual(out["refused_in_windows"], 3)
        self.assertEqual(out["encrypts"], {"ok": 5, "fail": 5, "info": 1})
        self.assertEqual(out["revokes"], {"ok": 2, "fail": 0, "info": 0})
        self.assertEqual(out["grants"], {"ok": 1, "fail": 0, "info": 0})

    def test_encrypt_allowed_after_acknowledged_revoke_is_an_anomaly(self):
        out = self.check([
            ("a0", "revoke", "ok", 10, 20),
            denied(1, 21, 22),
            allowed(2, 25, 30),   # began after the ack, ended before the grant was invoked
            ("a0", "grant", "ok", 40, 50),
        ])
        self.assertIs(out["valid"], False)
        a = out["anomalies"][0]
        self.assertEqual(a["type"], "revoked-permission-used")
        self.assertEqual((a["encrypt"]["start"], a["revoke"]["end"], a["window_end"]),
                         (25, 20, 40))
        # With no grant after it, the revocation holds to the end of the history.
        out = self.check([("a0", "revoke", "ok", 10, 20), denied(1, 21, 22),
                          allowed(2, 500, 501)])
        self.assertIs(out["valid"], False)
        self.assertIsNone(out["anomalies"][0]["window_end"])

    def test_unknown_and_failed_revokes_and_grants(self):
        # An unknown revoke is not a known revocation: an Encrypt allowed after it is no anomaly
        # (and, with no other window, nothing was checked).
        out = self.check([("a0", "revoke", "info", 10, None), allowed(1, 30, 31)])
        self.assertIsNone(out["valid"])
        self.assertEqual(out["windows"], 0)
        out = self.check([("a0", "revoke", "info", 10, 20), allowed(1, 30, 31)])
        self.assertIsNone(out["valid"])
        # A failed revoke did not happen either.
        out = self.check([("a0", "revoke", "fail", 10, 20), allowed(1, 30, 31)])
        self.assertIsNone(out["valid"])
        # An unknown grant ends the window at its invocation: before it is checked, after it not.
        base = [("a0", "revoke", "ok", 10, 20), denied(1, 21, 22),
                ("a1", "grant", "info", 40, None)]
        self.assertIs(self.check(base + [allowed(2, 41, 42)])["valid"], True)
        self.assertIs(self.check(base + [allowed(2, 30, 45)])["valid"], True)
        self.assertIs(self.check(base + [allowed(2, 30, 35)])["valid"], False)
        # A failed grant did not happen: it ends nothing.
        out = self.check([("a0", "revoke", "ok", 10, 20), ("a0", "grant", "fail", 30, 31),
                          denied(1, 32, 33), allowed(2, 40, 41)])
        self.assertIs(out["valid"], False)
        # An acknowledged grant still running when the revoke was invoked may be ordered after
        # it: no window.
        out = self.check([("a1", "grant", "ok", 5, 15), ("a0", "revoke", "ok", 10, 20),
                          allowed(2, 30, 31)])
        self.assertEqual(out["windows"], 0)
        self.assertIsNone(out["valid"])
        # An unknown grant invoked before the revoke may take effect after it, once: it excuses
        # the allowed Encrypts of one window, not of two.
        one = [("a1", "grant", "info", 0, None), ("a2", "revoke", "ok", 10, 20),
               denied(1, 21, 22), allowed(2, 30, 31), allowed(3, 32, 33)]
        out = self.check(one)
        self.assertIs(out["valid"], True, out)
        self.assertEqual(out["excused_by_unknown_grants"], 2)
        two = one + [("a2", "grant", "ok", 40, 41), ("a2", "revoke", "ok", 50, 60),
                     denied(1, 61, 62), allowed(2, 70, 71)]
        out = self.check(two)
        self.assertIs(out["valid"], False)
        self.assertEqual(out["anomaly_count"], 1)
        self.assertEqual(out["anomalies"][0]["encrypt"]["start"], 70)
        # ... unless a second unknown grant could be the one.
        out = self.check(two + [("a3", "grant", "info", 45, None)])
        self.assertIs(out["valid"], True, out)

    def test_no_encrypt_inside_a_window_is_unknown(self):
        # Revocations acknowledged, but every Encrypt completed outside the windows.
        out = self.check([allowed(1, 0, 5), ("a0", "revoke", "ok", 10, 20), allowed(2, 12, 25),
                          ("a0", "grant", "ok", 30, 40), allowed(1, 41, 42)])
        self.assertIsNone(out["valid"])
        self.assertEqual(out["encrypts_in_windows"], 0)
        self.assertIn("nothing was checked", out["unknown"])
        # Encrypts inside a window that all failed for other reasons (nodes down) observed no
        # revocation either.
        out = self.check([("a0", "revoke", "ok", 10, 20),
                          (1, "encrypt", "fail", 21, 22, "transport.refused")])
        self.assertIsNone(out["valid"])
        self.assertEqual(out["encrypts_in_windows"], 1)
        # An empty history.
        self.assertIsNone(self.check([])["valid"])


class HistoryTest(unittest.TestCase):
    def test_history_round_trip(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            h = History(os.path.join(d, "h.jsonl"))
            inv = h.invoke(1, "enable", {"key": "k"}, 2)
            h.complete(inv, "ok")
            h.invoke(2, "disable", {"key": "k"}, 3)
            h.close()
            ops = pair(h.events)
            self.assertEqual([o.type for o in ops], ["ok", "info"])
            self.assertEqual(ops[1].end, float("inf"))


if __name__ == "__main__":
    unittest.main()
