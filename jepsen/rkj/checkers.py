"""Checkers: each decides from the history alone (paired ops, see ``history.pair``) and returns
``{"valid": bool, "anomalies": [...], ...}``. ``valid`` is None when a search gave up (budget).
"""

from collections import defaultdict

from . import wgl
from .history import INF

MAX_REPORTED = 20


def _result(anomalies, **extra):
    out = {"valid": not anomalies, "anomaly_count": len(anomalies),
           "anomalies": anomalies[:MAX_REPORTED]}
    out.update(extra)
    return out


# ---------------------------------------------------------------------- set


def check_set(ops):
    """CreateKey adds its alias; list reads return the set. Lost: acknowledged, missing from a
    final read. Unexpected: read but never attempted. Stale: a linearizable read that began after
    a create was acknowledged and misses it. Vanished: a read (mid-run or final) that began after
    another read had ended and misses an element that read saw, whether or not its create was
    acknowledged (keys are never removed in this workload, and reads are linearizable)."""
    attempted = {}
    acked = {}
    info = set()
    for o in ops:
        if o.f == "create":
            attempted[o.value["alias"]] = o
            if o.type == "ok":
                acked[o.value["alias"]] = o
            elif o.type == "info":
                info.add(o.value["alias"])
    anomalies = []
    finals = [o for o in ops if o.f == "final-list" and o.type == "ok"]
    finals_by_node = {}
    for o in finals:
        finals_by_node[o.node] = set(o.result["aliases"])
    if not finals:
        anomalies.append({"type": "no-final-read", "detail": "no final list succeeded"})
    for node, seen in sorted(finals_by_node.items()):
        lost = sorted(set(acked) - seen)
        for a in lost[:5]:
            o = acked[a]
            anomalies.append({"type": "lost", "node": node, "alias": a,
                              "acked_at": o.end, "key_id": o.result.get("key_id")})
        if len(lost) > 5:
            anomalies.append({"type": "lost", "node": node, "more": len(lost) - 5})
    reads = [o for o in ops if o.type == "ok" and o.f in ("list", "final-list")]
    for r in reads:
        # A paged read may list an element twice (an insert ahead of the page shifts it), never
        # skip one: keys are never removed in this workload. So no duplicate check here.
        seen = r.result["aliases"]
        for a in set(seen) - set(attempted):
            anomalies.append({"type": "unexpected", "node": r.node, "alias": a})
        seen = set(seen)
        missing = [a for a, c in acked.items() if c.end < r.start and a not in seen]
        if missing and r.f == "list":
            anomalies.append({"type": "stale-read", "node": r.node, "read_start": r.start,
                              "missing": sorted(missing)[:5], "missing_count": len(missing)})
    anomalies += _vanished(reads)
    anomalies += lost_credential(ops)
    union = set().union(*finals_by_node.values()) if finals_by_node else set()
    return _result(anomalies, attempted=len(attempted), acknowledged=len(acked),
                   indeterminate=len(info), recovered=len(info & union),
                   final_reads=len(finals_by_node))


def lost_credential(ops, limit=5):
    """The credential that signed every op of the run was created, and acknowledged, before the
    run; an acknowledged op proves it was committed. A node that afterwards answers definitely
    that it does not exist (``AuthFailure.SecretIdNotFound``) has lost a committed write, and
    with it possibly everything after: *lost* (``what: credential``)."""
    first_ok = min((o.end for o in ops if o.type == "ok"), default=None)
    if first_ok is None:
        return []
    gone = [o for o in ops if o.type == "fail" and o.error == "AuthFailure.SecretIdNotFound"
            and o.start > first_ok]
    out = [{"type": "lost", "what": "credential", "node": o.node, "op": o.f, "at": o.start,
            "detail": "the run's credential, acknowledged before the run and used by the op "
                      "acknowledged at %d, is unknown to this node" % first_ok}
           for o in gone[:limit]]
    if len(gone) > limit:
        out.append({"type": "lost", "what": "credential", "more": len(gone) - limit})
    return out


def _vanished(reads):
    """Reads that miss an element some read which ended before they began had seen. Reads in
    order of start; the union of what earlier-ended reads saw grows as their ends pass."""
    by_end = sorted(reads, key=lambda o: o.end)
    seen_by = {}  # alias -> the first-ended read that saw it
    k = 0
    out = []
    for r in sorted(reads, key=lambda o: o.start):
        while k < len(by_end) and by_end[k].end < r.start:
            for a in by_end[k].result["aliases"]:
                seen_by.setdefault(a, by_end[k])
            k += 1
        missing = sorted(set(seen_by) - set(r.result["aliases"]))
        if missing:
            first = seen_by[missing[0]]
            out.append({"type": "vanished", "node": r.node, "read": r.f, "read_start": r.start,
                        "missing": missing[:5], "missing_count": len(missing),
                        "seen_by": {"f": first.f, "node": first.node, "start": first.start,
                                    "end": first.end}})
    return out


# ---------------------------------------------------------------------- register


def by_key(ops, fs):
    out = defaultdict(list)
    for o in ops:
        if o.f in fs and isinstance(o.value, dict) and "key" in o.value:
            out[o.value["key"]].append(o)
    return out


REGISTER_FS = ("enable", "disable", "set-desc", "describe", "encrypt")


def check_register(ops, budget=2_000_000):
    """Linearizability of each key's (enabled, description) register."""
    anomalies = []
    unknown = []
    checked = 0
    for key, kops in sorted(by_key(ops, REGISTER_FS).items()):
        # An unknown description write whose (unique) value nobody read may as well never have
        # happened: dropping it changes no verdict and keeps the search small.
        read_descs = {o.result.get("desc") for o in kops if o.f == "describe" and o.type == "ok"}
        kops = [o for o in kops if not (o.f == "set-desc" and o.type == "info" and
                                        o.value["desc"] not in read_descs)]
        res = wgl.check(kops, wgl.KeyStateModel(), wgl.is_read, budget=budget)
        checked += 1
        if res.valid is False:
            anomalies.append({"type": "nonlinearizable", "key": key, "ops": res.ops,
                              "reason": res.reason, "window": res.to_json()["window"]})
        elif res.valid is None:
            unknown.append(key)
    out = _result(anomalies, keys=checked, unknown_keys=unknown)
    if unknown and not anomalies:
        out["valid"] = None
    return out


def check_encrypt_after_disable(ops):
    """The core property by name: no Encrypt invoked after a DisableKey was acknowledged succeeds
    unless an EnableKey can be ordered between them: one that ended after the DisableKey started
    (a concurrent enable may take effect after the disable even if its answer arrived first) and
    started before the Encrypt ended."""
    anomalies = []
    for key, kops in by_key(ops, ("enable", "disable", "encrypt")).items():
        disables = [o for o in kops if o.f == "disable" and o.type == "ok"]
        enables = [o for o in kops if o.f == "enable" and o.type in ("ok", "info")]
        for e in kops:
            if e.f != "encrypt" or e.type != "ok" or not e.result.get("enabled"):
                continue
            before = [d for d in disables if d.end < e.start]
            if not before:
                continue
            d = max(before, key=lambda d: d.end)
            if not any(en.start < e.end and en.end > d.start for en in enables):
                anomalies.append({"type": "encrypt-after-disable", "key": key,
                                  "disable": d.to_json(), "encrypt": e.to_json()})
    return _result(anomalies)


def check_stale_reads(ops, slack_ns=600_000_000):
    """Stale DescribeKeys (checked on the description, whose values are unique): the value must
    have been written by an op invoked before the read ended (or be the initial empty one), and
    it must not have been superseded before (read start - reported leader-contact lag - slack):
    a node that heard from the leader L ms ago has applied what was committed then. A stale
    answer without the lag (``X-Raftkms-Leader-Contact-Ms``) is an anomaly (*no-lag-header*): its
    staleness is unbounded. A history without a single stale answer is unknown (``valid`` None),
    not a pass: nothing was checked."""
    anomalies = []
    checked = 0
    for key, kops in by_key(ops, ("set-desc", "stale-describe")).items():
        writes = [o for o in kops if o.f == "set-desc" and o.type in ("ok", "info")]
        by_value = {w.value["desc"]: w for w in writes}
        oks = [w for w in writes if w.type == "ok"]
        for r in kops:
            if r.f != "stale-describe" or r.type != "ok":
                continue
            checked += 1
            d = r.result.get("desc", "")
            w = by_value.get(d)
            if d != "" and (w is None or w.start > r.end):
                anomalies.append({"type": "state-never-existed", "key": key, "read": r.to_json()})
                continue
            lag = r.result.get("contact_ms")
            if lag is None:
                anomalies.append({"type": "no-lag-header", "key": key, "read": r.to_json()})
                continue
            horizon = r.start - lag * 1_000_000 - slack_ns
            w_end = w.end if w is not None else -1
            newer = [o for o in oks if o.start > w_end and o.end < horizon]
            if newer:
                anomalies.append({"type": "lag-dishonest", "key": key, "read": r.to_json(),
                                  "superseded_by": newer[0].to_json(), "reported_lag_ms": lag})
    out = _result(anomalies, stale_reads=checked)
    if checked == 0 and not anomalies:
        out["valid"] = None
        out["unknown"] = "no stale read succeeded: nothing was checked"
    return out


# ---------------------------------------------------------------------- rotation / durability


def check_rotation(ops):
    """Per key: an Encrypt's version is at least 1 + the rotations acknowledged before it began,
    and at most 1 + the rotations (ok or unknown) begun before it ended; versions never go
    backwards in real time; at the end every node encrypts under the same version."""
    anomalies = []
    for key, kops in by_key(ops, ("rotate", "encrypt", "final-encrypt")).items():
        rot_ok = sorted(o.end for o in kops if o.f == "rotate" and o.type == "ok")
        rot_maybe = sorted(o.start for o in kops if o.f == "rotate" and o.type in ("ok", "info"))
        encs = [o for o in kops if o.f in ("encrypt", "final-encrypt") and o.type == "ok"]
        for e in encs:
            v = e.result["version"]
            lo = 1 + sum(1 for t in rot_ok if t < e.start)
            hi = 1 + sum(1 for t in rot_maybe if t < e.end)
            if v < lo:
                anomalies.append({"type": "version-too-old", "key": key, "version": v,
                                  "min": lo, "op": e.to_json()})
            elif v > hi:
                anomalies.append({"type": "version-from-nowhere", "key": key, "version": v,
                                  "max": hi, "op": e.to_json()})
        encs.sort(key=lambda o: o.end)
        best = None
        for e in sorted(encs, key=lambda o: o.start):
            prior = [p for p in encs if p.end < e.start]
            if prior:
                best = max(p.result["version"] for p in prior)
                if e.result["version"] < best:
                    anomalies.append({"type": "version-went-back", "key": key,
                                      "saw": e.result["version"], "after": best,
                                      "op": e.to_json()})
        finals = {o.node: o.result["version"] for o in kops
                  if o.f == "final-encrypt" and o.type == "ok"}
        if len(set(finals.values())) > 1:
            anomalies.append({"type": "nodes-disagree-on-version", "key": key,
                              "versions": finals})
    return _result(anomalies)


# Answers that are not a node's verdict on the ciphertext: the node did not answer, was not
# ready to (no leader or quorum: ServiceTemporaryUnavailable), or refused the request before
# looking at it (a skewed clock outside the TC3 window, rate limits). Any other refusal of an
# acknowledged blob is an anomaly, InternalError included (on a read it is a cryptographic or
# internal failure of a node that answered, not unavailability).
NOT_A_DECRYPT_ANSWER = ("transport", "transport.refused",
                        "UnsupportedOperation.ServiceTemporaryUnavailable",
                        "AuthFailure.SignatureExpire")
NOT_A_DECRYPT_ANSWER_PREFIXES = ("http.", "RequestLimitExceeded")


def _decrypt_answered(error):
    return not (error is None or error in NOT_A_DECRYPT_ANSWER or
                error.startswith(NOT_A_DECRYPT_ANSWER_PREFIXES))


def check_durability(ops):
    """Every acknowledged Encrypt's blob decrypts to its plaintext, mid-run and on every node at
    the end. A Decrypt that began after the Encrypt completed and that a node refused, with any
    error but "not answering" (``NOT_A_DECRYPT_ANSWER``: transport errors,
    ServiceTemporaryUnavailable, a TC3 clock refusal, rate limits), is an anomaly, even if later
    decrypts of the blob succeed: InvalidCiphertext (*lost-ciphertext*), CmkNotFound and the
    rest (*decrypt-refused*). At the end, any failure is an anomaly."""
    anomalies = []
    enc_end = {}
    for o in ops:
        if o.f == "encrypt" and o.type == "ok":
            enc_end[o.result["blob"]] = o.end
    final_seen = 0
    for o in ops:
        if o.f not in ("decrypt", "final-decrypt"):
            continue
        blob = o.value["blob"]
        if o.type == "ok":
            if o.result.get("pt") != o.value["pt"]:
                anomalies.append({"type": "wrong-plaintext", "node": o.node, "op": o.to_json()})
            elif o.f == "final-decrypt":
                final_seen += 1
        elif o.error == "InvalidParameterValue.InvalidCiphertext" and \
                enc_end.get(blob, INF) < o.start:
            anomalies.append({"type": "lost-ciphertext", "node": o.node, "key": o.value["key"],
                              "op": o.to_json()})
        elif o.f == "decrypt" and enc_end.get(blob, INF) < o.start and \
                _decrypt_answered(o.error):
            anomalies.append({"type": "decrypt-refused", "node": o.node, "key": o.value["key"],
                              "error": o.error, "op": o.to_json()})
        elif o.f == "final-decrypt":
            anomalies.append({"type": "final-decrypt-failed", "node": o.node,
                              "key": o.value["key"], "error": o.error})
    return _result(anomalies, acknowledged_encrypts=len(enc_end), final_decrypts_ok=final_seen)


# ---------------------------------------------------------------------- deletion


def check_deletion(ops, clock_timeline, wall_of, tolerance_s=305, liveness_grace_s=60):
    """A key may be gone only once some node's clock has passed (its ScheduleKeyDeletion's
    invocation + the window). ``clock_timeline``: [(t_ns, node, skew_s)] set by the nemesis; the
    tolerance is the TC3 timestamp window (300 s, the most a client-facing node's clock can be
    behind and still accept requests) plus 5 s. A history in which no deletion was ever observed
    (no DescribeKey saw a key gone) is unknown (``valid`` None), not a pass: the property was
    never exercised.

    Reads made after every clock was moved past every window (``value["past_windows"]``) also
    judge liveness: there a key still pending deletion whose deletion date (as the read shows it,
    stamped by the leader's clock when it was scheduled) the clocks have passed, or a key whose
    schedule was acknowledged and that is neither pending nor gone, is an anomaly."""
    anomalies = []
    observed = set()
    changes = sorted(clock_timeline)

    def max_clock_by(t):
        # The furthest any node's wall clock had been pushed at or before history time t.
        ahead = 0
        for tc, _node, skew in changes:
            if tc <= t:
                ahead = max(ahead, skew)
        return wall_of(t) + ahead

    for key, kops in by_key(ops, ("schedule", "describe")).items():
        scheds = [o for o in kops if o.f == "schedule" and o.type in ("ok", "info")]
        due = min((wall_of(s.start) + s.value["days"] * 86400 for s in scheds), default=None)
        for r in kops:
            if r.f != "describe" or r.type != "ok" or r.result.get("state") != "Gone":
                continue
            observed.add(key)
            if due is None:
                anomalies.append({"type": "deleted-without-schedule", "key": key,
                                  "op": r.to_json()})
                continue
            clock = max_clock_by(r.end)
            if clock < due - tolerance_s:
                anomalies.append({"type": "deleted-early", "key": key, "op": r.to_json(),
                                  "early_by_s": round(due - clock)})
                break
        acked = any(s.type == "ok" for s in scheds)
        for r in kops:
            if r.f != "describe" or r.type != "ok" or not (r.value or {}).get("past_windows"):
                continue
            state = r.result.get("state")
            if state == "Gone":
                continue
            if state == "PendingDelete":
                date = r.result.get("deletion_date")
                # Not yet due by any clock (a schedule stamped by a clock pushed further ahead
                # than this run's last phase reached): nothing to judge.
                if date is not None and max_clock_by(r.start) < date + liveness_grace_s:
                    continue
            elif not acked:
                continue
            anomalies.append({"type": "not-deleted-after-window", "key": key,
                              "acknowledged": acked, "op": r.to_json()})
            break
    out = _result(anomalies, deleted_keys_observed=len(observed))
    if not observed and not anomalies:
        out["valid"] = None
        out["unknown"] = "no deletion was observed: nothing was checked"
    return out


# ---------------------------------------------------------------------- convergence


def check_convergence(samples):
    """``samples``: the final /admin/digest of every node. All equal, or an anomaly."""
    anomalies = []
    errs = {n: d for n, d in samples.items() if "error" in d}
    if errs:
        anomalies.append({"type": "node-unreachable", "nodes": errs})
    ds = {n: (d.get("applied_index"), d.get("digest")) for n, d in samples.items()
          if "error" not in d}
    if len(set(ds.values())) > 1:
        anomalies.append({"type": "diverged", "digests": {n: list(v) for n, v in ds.items()}})
    return _result(anomalies, nodes=len(samples))
