"""Checkers that cannot pass vacuously: each test is a hand-made history on which the checker as
of commit d8c1e0f (before this file) returned PASS, and which the current checker flags (FAIL) or
declares unknown (``valid`` None, counted as not passed).

Run: python3 -m unittest discover -s jepsen/tests
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from rkj import checkers  # noqa: E402
from test_checkers import K, ops_from  # noqa: E402

MS = 1_000_000


def anomaly_types(out):
    return sorted(a["type"] for a in out["anomalies"])


class KeySetVanishedTest(unittest.TestCase):
    def test_unacknowledged_element_seen_then_missing(self):
        """The create of "a" never got an answer (info). One read saw "a"; a read that began after
        it had ended misses "a"; the final read has it again. The old checker returned PASS here
        (it only looked for acknowledged creates); a read cannot unsee an element."""
        spec = [(1, "create", {"alias": "a"}, "info", None, 0, None),
                (2, "list", None, "ok", {"aliases": ["a"]}, 2, 3),
                (3, "list", None, "ok", {"aliases": []}, 4, 5),
                (4, "final-list", None, "ok", {"aliases": ["a"]}, 10, 11)]
        out = checkers.check_set(ops_from(spec))
        self.assertFalse(out["valid"])
        self.assertEqual(anomaly_types(out), ["vanished"])
        self.assertEqual(out["anomalies"][0]["missing"], ["a"])
        self.assertEqual(out["anomalies"][0]["seen_by"]["end"], 3)

    def test_unacknowledged_element_missing_from_final_read(self):
        """An element a mid-run read saw is missing from a final read (its create ended info). The
        old checker returned PASS here: *lost* only counted acknowledged creates."""
        spec = [(1, "create", {"alias": "a"}, "info", None, 0, None),
                (2, "list", None, "ok", {"aliases": ["a"]}, 2, 3),
                (4, "final-list", None, "ok", {"aliases": []}, 10, 11)]
        out = checkers.check_set(ops_from(spec))
        self.assertEqual(anomaly_types(out), ["vanished"])
        self.assertEqual(out["anomalies"][0]["read"], "final-list")

    def test_concurrent_reads_may_disagree(self):
        # The second read began before the first ended: no real-time order, no anomaly; and an
        # element nobody has seen yet may be missing.
        spec = [(1, "create", {"alias": "a"}, "info", None, 0, None),
                (2, "list", None, "ok", {"aliases": ["a"]}, 2, 6),
                (3, "list", None, "ok", {"aliases": []}, 5, 7),
                (4, "final-list", None, "ok", {"aliases": ["a"]}, 10, 11)]
        self.assertTrue(checkers.check_set(ops_from(spec))["valid"])


class LostCredentialTest(unittest.TestCase):
    def test_every_node_forgot_the_credential(self):
        """A power cut lost everything since the last fsync, the run's credential included: every
        final read is refused with SecretIdNotFound. The checker before this test reported only
        *no-final-read* (nothing to compare); the credential is an acknowledged write (every
        acknowledged op was signed with it), so it is *lost*."""
        spec = [(1, "create", {"alias": "a"}, "ok", {"key_id": "k1"}, 0, 1),
                (2, "list", None, "fail", None, 5, 6),
                (3, "final-list", None, "fail", None, 10, 11)]
        ops = ops_from(spec)
        for o in ops:
            if o.type == "fail":
                o.error = "AuthFailure.SecretIdNotFound"
        out = checkers.check_set(ops)
        self.assertEqual(anomaly_types(out), ["lost", "lost", "no-final-read"])
        self.assertEqual({a.get("what") for a in out["anomalies"]}, {"credential", None})

    def test_unknown_secret_before_any_acknowledged_op_is_not_a_loss(self):
        spec = [(2, "list", None, "fail", None, 0, 1),
                (1, "create", {"alias": "a"}, "ok", {"key_id": "k1"}, 2, 3),
                (3, "final-list", None, "ok", {"aliases": ["a"]}, 10, 11)]
        ops = ops_from(spec)
        early = next(o for o in ops if o.f == "list")
        early.error = "AuthFailure.SecretIdNotFound"
        self.assertTrue(checkers.check_set(ops)["valid"])
        early.start, early.end = 4, 5  # after the acknowledged create: lost
        self.assertFalse(checkers.check_set(ops)["valid"])


class DurabilityRefusalTest(unittest.TestCase):
    ENC = (1, "encrypt", {"key": "k", "pt": "p"}, "ok", {"version": 1, "blob": "B"}, 0, 1)

    def dec(self, p, start, end, typ, f="decrypt"):
        return (p, f, {"key": "k", "blob": "B", "pt": "p"}, typ,
                {"pt": "p"} if typ == "ok" else None, start, end)

    def test_cmk_not_found_mid_run_that_recovers(self):
        """A node answers CmkNotFound for an acknowledged ciphertext mid-run; later decrypts and
        the final one succeed. The old checker returned PASS here (it flagged InvalidCiphertext
        only)."""
        ops = ops_from([self.ENC, self.dec(2, 5, 6, "fail"), self.dec(3, 8, 9, "ok"),
                        self.dec(4, 20, 21, "ok", f="final-decrypt")])
        next(o for o in ops if o.type == "fail").error = "ResourceUnavailable.CmkNotFound"
        out = checkers.check_durability(ops)
        self.assertFalse(out["valid"])
        self.assertEqual(anomaly_types(out), ["decrypt-refused"])
        self.assertEqual(out["anomalies"][0]["error"], "ResourceUnavailable.CmkNotFound")

    def test_internal_error_on_a_read_is_a_refusal(self):
        """InternalError on a Decrypt is a node failing to decrypt (its root key, its storage),
        not unavailability (that is ServiceTemporaryUnavailable). The old checker returned PASS
        here."""
        ops = ops_from([self.ENC, self.dec(2, 5, 6, "fail"),
                        self.dec(4, 20, 21, "ok", f="final-decrypt")])
        next(o for o in ops if o.type == "fail").error = "InternalError"
        self.assertEqual(anomaly_types(checkers.check_durability(ops)), ["decrypt-refused"])

    def test_unavailability_is_not_a_refusal(self):
        # A node that did not answer, or was not ready to, said nothing about the ciphertext.
        for err in ("transport", "transport.refused", "http.502",
                    "UnsupportedOperation.ServiceTemporaryUnavailable",
                    "AuthFailure.SignatureExpire"):
            ops = ops_from([self.ENC, self.dec(2, 5, 6, "fail"),
                            self.dec(4, 20, 21, "ok", f="final-decrypt")])
            next(o for o in ops if o.type == "fail").error = err
            self.assertTrue(checkers.check_durability(ops)["valid"], err)

    def test_decrypt_before_the_encrypt_was_acknowledged_is_not_judged(self):
        ops = ops_from([(1, "encrypt", {"key": "k", "pt": "p"}, "ok", {"version": 1, "blob": "B"},
                         0, 10), self.dec(2, 5, 6, "fail")])
        next(o for o in ops if o.type == "fail").error = "ResourceUnavailable.CmkNotFound"
        self.assertTrue(checkers.check_durability(ops)["valid"])


class DeletionObservedTest(unittest.TestCase):
    def test_no_deletion_observed_is_unknown(self):
        """Schedules, and reads that only ever saw PendingDelete: the property "not deleted
        early" was never exercised. The old checker returned PASS here; now unknown."""
        spec = [(1, "schedule", {"key": "k", "days": 7}, "ok", None, 0, 1),
                (2, "describe", K, "ok", {"state": "PendingDelete"}, 10, 20),
                (3, "describe", K, "ok", {"state": "PendingDelete"}, 30, 40)]
        out = checkers.check_deletion(ops_from(spec), [], lambda t: 1000.0 + t)
        self.assertIsNone(out["valid"])
        self.assertEqual(out["deleted_keys_observed"], 0)

    def test_reads_past_every_window_judge_liveness(self):
        """Once every clock is past every window (the workload's last phase), an acknowledged
        schedule whose key is still there, or any key still pending, is an anomaly; a key whose
        schedule was never acknowledged may still be Disabled (the schedule may not have applied)."""
        sched = (1, "schedule", {"key": "k", "days": 7}, "ok", None, 0, 1)
        past = {"key": "k", "past_windows": True}
        bump = [(5, 2, 8 * 86400)]

        def wall(t):
            return 1000.0 + t
        gone = (2, "describe", past, "ok", {"state": "Gone"}, 10, 20)
        self.assertIs(checkers.check_deletion(ops_from([sched, gone]), bump, wall)["valid"], True)
        for state in ("Disabled", "PendingDelete", "Enabled"):
            kept = (4, "describe", past, "ok", {"state": state}, 30, 40)
            out = checkers.check_deletion(ops_from([sched, gone, kept]), bump, wall)
            self.assertIs(out["valid"], False, state)
            self.assertEqual(out["anomalies"][0]["type"], "not-deleted-after-window")
        # Pending with a deletion date the clocks have not reached (stamped by a clock pushed
        # further ahead): not judged. With one they have passed: an anomaly.
        for date, valid in ((1000 + 20 * 86400, True), (1000 + 7 * 86400, False)):
            kept = (4, "describe", past, "ok", {"state": "PendingDelete", "deletion_date": date},
                    30, 40)
            out = checkers.check_deletion(ops_from([sched, gone, kept]), bump, wall)
            self.assertIs(out["valid"], valid, date)
        unacked = (1, "schedule", {"key": "k", "days": 7}, "info", None, 0, 1)
        j_sched = (3, "schedule", {"key": "j", "days": 7}, "ok", None, 0, 1)
        j_gone = (3, "describe", {"key": "j", "past_windows": True}, "ok", {"state": "Gone"}, 10, 20)
        kept = (2, "describe", past, "ok", {"state": "Disabled"}, 10, 20)
        pend = (2, "describe", past, "ok", {"state": "PendingDelete"}, 10, 20)
        self.assertIs(checkers.check_deletion(ops_from([unacked, kept, j_sched, j_gone]), bump,
                                              wall)["valid"], True)
        self.assertIs(checkers.check_deletion(ops_from([unacked, pend, j_sched, j_gone]), bump,
                                              wall)["valid"], False)

    def test_observed_legitimate_deletion_passes(self):
        spec = [(1, "schedule", {"key": "k", "days": 7}, "ok", None, 0, 1),
                (2, "describe", K, "ok", {"state": "Gone"}, 10, 20)]
        out = checkers.check_deletion(ops_from(spec), [(5, 2, 8 * 86400)], lambda t: 1000.0 + t)
        self.assertIs(out["valid"], True)
        self.assertEqual(out["deleted_keys_observed"], 1)


class StaleHeaderTest(unittest.TestCase):
    def test_stale_answer_without_lag_header(self):
        """A stale DescribeKey shows d1, superseded long before, and carries no
        X-Raftkms-Leader-Contact-Ms: its staleness is unbounded. The old checker returned PASS
        here (a read without the header was skipped)."""
        spec = [(1, "set-desc", dict(K, desc="d1"), "ok", None, 0, 1 * MS),
                (1, "set-desc", dict(K, desc="d2"), "ok", None, 2 * MS, 3 * MS),
                (2, "stale-describe", K, "ok", {"enabled": True, "desc": "d1"},
                 4000 * MS, 4001 * MS)]
        out = checkers.check_stale_reads(ops_from(spec))
        self.assertFalse(out["valid"])
        self.assertEqual(anomaly_types(out), ["no-lag-header"])

    def test_no_stale_read_is_unknown(self):
        """A stale run in which no stale read succeeded (all failed): nothing was checked. The
        old checker returned PASS here; now unknown."""
        spec = [(1, "set-desc", dict(K, desc="d1"), "ok", None, 0, 1 * MS),
                (2, "stale-describe", K, "fail", None, 2 * MS, 3 * MS)]
        out = checkers.check_stale_reads(ops_from(spec))
        self.assertIsNone(out["valid"])
        self.assertEqual(out["stale_reads"], 0)


if __name__ == "__main__":
    unittest.main()
