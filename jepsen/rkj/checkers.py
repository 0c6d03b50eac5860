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


# Reads of what an acknowledged write sealed: Decrypt of a blob, GetDataKeyPlaintext of a hosted
# data key (mid-run and final).
READS = ("decrypt", "final-decrypt", "read-data-key", "final-read-data-key")
# What a node answers for a ciphertext or hosted data key it does not have.
LOST_CODES = ("InvalidParameterValue.InvalidCiphertext", "ResourceUnavailable.DataKeyNotFound")


def check_durability(ops):
    """Every acknowledged Encrypt's blob decrypts to its plaintext, mid-run and on every node at
    the end. A Decrypt that began after the Encrypt completed and that a node refused, with any
    error but "not answering" (``NOT_A_DECRYPT_ANSWER``: transport errors,
    ServiceTemporaryUnavailable, a TC3 clock refusal, rate limits), is an anomaly, even if later
    decrypts of the blob succeed: InvalidCiphertext (*lost-ciphertext*), CmkNotFound and the
    rest (*decrypt-refused*). At the end, any failure is an anomaly.

    Not an answer either: an ``InternalError`` that a node whose audit trail had failed gave
    instead of its result (fail closed; ``audit_withheld`` marks such ops ``audit_withheld``
    from the audit artifacts: no record, an fsync fault on that node); counted
    ``withheld_by_audit``.

    Hosted data keys are held to the same rule: an acknowledged GenerateDataKey with
    ``IsHostedByKms`` (``generate-data-key``, its ``blob`` the DataKeyId) must read back through
    GetDataKeyPlaintext (``read-data-key``, ``final-read-data-key``) as the plaintext it returned;
    DataKeyNotFound for it is *lost-ciphertext*."""
    anomalies = []
    withheld = 0
    enc_end = {}
    for o in ops:
        if o.f in ("encrypt", "generate-data-key") and o.type == "ok":
            enc_end[o.result["blob"]] = o.end
    final_seen = 0
    for o in ops:
        if o.f not in READS:
            continue
        final = o.f in ("final-decrypt", "final-read-data-key")
        blob = o.value["blob"]
        if o.type == "ok":
            if o.result.get("pt") != o.value["pt"]:
                anomalies.append({"type": "wrong-plaintext", "node": o.node, "op": o.to_json()})
            elif final:
                final_seen += 1
        elif o.error in LOST_CODES and enc_end.get(blob, INF) < o.start:
            anomalies.append({"type": "lost-ciphertext", "node": o.node, "key": o.value["key"],
                              "op": o.to_json()})
        elif not final and o.extra.get("audit_withheld"):
            withheld += 1
        elif not final and enc_end.get(blob, INF) < o.start and \
                _decrypt_answered(o.error):
            anomalies.append({"type": "decrypt-refused", "node": o.node, "key": o.value["key"],
                              "error": o.error, "op": o.to_json()})
        elif final:
            anomalies.append({"type": "final-decrypt-failed", "node": o.node,
                              "key": o.value["key"], "error": o.error})
    return _result(anomalies, acknowledged_encrypts=len(enc_end), final_decrypts_ok=final_seen,
                   withheld_by_audit=withheld)


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


# ---------------------------------------------------------------------- policy revocation

# An Encrypt refused by the authorizer: no allowing statement for the action
# (AuthFailure.UnauthorizedOperation), or none for this resource (UnauthorizedOperation).
UNAUTHORIZED_CODES = ("AuthFailure.UnauthorizedOperation", "UnauthorizedOperation")


def _outcomes(ops):
    out = {"ok": 0, "fail": 0, "info": 0}
    for o in ops:
        out[o.type] += 1
    return out


def check_policy_revocation(ops):
    """A revoked permission stays revoked. ``revoke`` / ``grant`` replace the sub-user's policy
    with one that does not / does allow kms:Encrypt; ``encrypt`` is an Encrypt signed by the
    sub-user. A revoke acknowledged at T_ack (its completion) is in force until the invocation
    of the next grant: an ``encrypt`` invoked after T_ack and completed before that grant's
    invocation that succeeded is an anomaly (*revoked-permission-used*).

    Outcomes, conservatively: only an acknowledged revoke opens a window (an unknown or failed
    one is not a known revocation). The next grant is the first one, acknowledged or unknown,
    that may be ordered after the revoke: invoked after it was, or acknowledged and still
    running when it was invoked; the window ends at that grant's invocation (it may have taken
    effect any time after). A failed grant did not happen and ends nothing. An unknown grant
    invoked before the revoke may also have taken effect late, after the revoke, but only once:
    each such grant excuses the successful encrypts of at most one point in time (the fewest
    points that cover them are chosen, each given a grant invoked before it); what they cannot
    cover is reported.

    A history in which no encrypt completed inside a window, or in which none of those was
    refused by the authorizer (``UNAUTHORIZED_CODES``), is unknown (``valid`` None): the
    revocation was never exercised."""
    revokes = [o for o in ops if o.f == "revoke"]
    grants = [o for o in ops if o.f == "grant"]
    encrypts = [o for o in ops if o.f == "encrypt"]
    may_have_granted = [g for g in grants if g.type in ("ok", "info")]
    windows = []  # (revoke, end, next grant or None)
    for r in sorted((o for o in revokes if o.type == "ok"), key=lambda o: o.end):
        nxt = [g for g in may_have_granted
               if g.start > r.start or (g.type == "ok" and g.end > r.start)]
        g = min(nxt, key=lambda o: o.start, default=None)
        end = g.start if g is not None else INF
        if end > r.end:
            windows.append((r, end, g))
    # encrypt index -> (encrypt, the window of the latest-invoked revoke whose window has it:
    # a grant excusing the encrypt must take effect after every such revoke)
    inside = {}
    for e in encrypts:
        if e.type not in ("ok", "fail"):
            continue
        for r, end, g in windows:
            if r.end < e.start and e.end < end:
                prev = inside.get(e.index)
                if prev is None or r.start > prev[1][0].start:
                    inside[e.index] = (e, (r, end, g))
    refused = [e for e, _ in inside.values() if e.type == "fail" and e.error in UNAUTHORIZED_CODES]
    used = sorted(((e, w) for e, w in inside.values() if e.type == "ok"), key=lambda x: x[0].end)
    # Unknown grants invoked before a window's revoke may have taken effect inside it, once each.
    # An encrypt is excused by a grant taking effect after its revoke was invoked and before the
    # encrypt completed. Greedy by completion: a point just before each uncovered encrypt's end,
    # as late as possible, covers the most; any unused unknown grant invoked before the point
    # may be it (the eligible grants only grow as the points move on).
    unknown_grants = sorted(g.start for g in grants if g.type == "info")
    spare = 0
    k = 0
    point = None
    excused = 0
    anomalies = []
    for e, (r, end, g) in used:
        if point is not None and r.start < point:
            excused += 1
            continue
        while k < len(unknown_grants) and unknown_grants[k] < e.end:
            spare += 1
            k += 1
        if spare > 0:
            spare -= 1
            point = e.end
            excused += 1
            continue
        anomalies.append({
            "type": "revoked-permission-used",
            "detail": "a revoked permission allowed a request that started after the "
                      "revocation was acknowledged",
            "node": e.node, "encrypt": e.to_json(), "revoke": r.to_json(),
            "window_end": None if end == INF else end,
            "next_grant": g.to_json() if g is not None else None})
    # Informational, not judged: refusals that began after a grant was acknowledged and ended
    # before the next revoke was invoked (a stale denial; an unknown revoke may explain one).
    refused_after_grant = 0
    revoke_starts = sorted(o.start for o in revokes if o.type in ("ok", "info"))
    granted = [(g.end, min((t for t in revoke_starts if t > g.start), default=INF))
               for g in grants if g.type == "ok"]
    for e in encrypts:
        if e.type != "fail" or e.error not in UNAUTHORIZED_CODES:
            continue
        for acked, nxt in granted:
            if acked < e.start and e.end < nxt:
                refused_after_grant += 1
                break
    out = _result(anomalies, encrypts=_outcomes(encrypts), revokes=_outcomes(revokes),
                  grants=_outcomes(grants), windows=len(windows),
                  encrypts_in_windows=len(inside), refused_in_windows=len(refused),
                  ok_in_windows=len(used), excused_by_unknown_grants=excused,
                  refused_after_acknowledged_grant=refused_after_grant)
    if not anomalies:
        if not inside:
            out["valid"] = None
            out["unknown"] = ("no encrypt completed inside a revocation window: nothing was "
                              "checked")
        elif not refused:
            out["valid"] = None
            out["unknown"] = ("no encrypt inside a revocation window was refused by the "
                              "authorizer: the revocation was never observed")
    return out


# ---------------------------------------------------------------------- audit trail

# API actions whose record raftkms makes durable (fsynced) before it answers: the writes of the
# Tencent dialect (src/http/tencent/actions/mod.rs; Action::is_write in src/kms/audit.rs: every
# action but reads, crypto and queries). The workloads use CreateKey, EnableKey, DisableKey,
# UpdateKeyDescription, RotateKey and ScheduleKeyDeletion.
AUDIT_WRITE_ACTIONS = frozenset((
    "CreateKey", "UpdateAlias", "UpdateKeyDescription", "EnableKey", "DisableKey",
    "EnableKeys", "DisableKeys", "EnableKeyRotation", "DisableKeyRotation", "RotateKey",
    "ScheduleKeyDeletion", "CancelKeyDeletion", "ArchiveKey", "CancelKeyArchive",
    "GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial",
    "ReplicateKey"))
# Records of other requests reach the disk within [audit] flush-interval-ms (100) of the answer;
# a crash inside that window (plus a write and sync under way: 1 s of slack) may lose them.
AUDIT_FLUSH_NS = 100_000_000
AUDIT_SLACK_NS = 1_000_000_000
# Faults that kill a node's process between the start event's requested_t and t (the start is
# recorded once the process is known to be gone): kill -9, power loss, the membership removal
# (the node is killed, then wiped; its trail was archived before the wipe).
AUDIT_KILL_FAULTS = frozenset(("kill", "kill-all", "power", "power-all", "membership"))
# Faults during the whole of which a node may lose the records it has not synced: fsync restarts
# the node under libfiu and clock-rate under a fast or slow clock (a kill at the start and at the
# end of each), and a failed sync fails the trail,
# losing the records of the batch (src/audit/mod.rs, "Failure"; the node may also exit).
AUDIT_WINDOW_FAULTS = frozenset(("fsync", "clock-rate"))


def answered_in(t, window):
    """Whether an answer read at ``t`` falls in a loss window (``audit_loss_windows``): from the
    flush interval and slack before the window's start to its end."""
    return window[0] <= t + AUDIT_FLUSH_NS + AUDIT_SLACK_NS and t <= window[1]


def audit_loss_windows(events, t_end=INF):
    """When each node may have lost records it had not synced, from the nemesis timeline
    (``nemesis.json``): ``{node: [(from_ns, to_ns, fault)]}``. A kill-like fault (``kill``,
    ``kill-all``, ``power``, ``power-all``, ``membership``) spans its start event's
    ``requested_t`` .. ``t``; ``fsync`` spans its requested start .. its stop (or ``t_end``); the
    heal at the end of a run kills a node still running under libfiu (the ``heal`` event's
    ``killed``, until the ``healed`` event). Pauses, partitions, clocks and latency lose
    nothing."""
    out = defaultdict(list)
    open_ = {}
    heal = None
    for ev in events:
        kind, fault = ev.get("event"), ev.get("fault")
        start = ev.get("requested_t", ev["t"])
        if kind == "start" and fault in AUDIT_KILL_FAULTS:
            for n in ev.get("nodes", []):
                out[n].append((start, ev["t"], fault))
        elif kind == "start" and fault in AUDIT_WINDOW_FAULTS:
            open_[(fault, ev.get("id"))] = ev
        elif kind == "stop" and (fault, ev.get("id")) in open_:
            s = open_.pop((fault, ev.get("id")))
            for n in s.get("nodes", []):
                out[n].append((s.get("requested_t", s["t"]), ev["t"], fault))
        elif kind == "heal" and ev.get("killed"):
            heal = ev
        elif kind == "healed" and heal is not None:
            for n in heal["killed"]:
                out[n].append((heal["t"], ev["t"], "heal"))
            heal = None
    for s in open_.values():
        for n in s.get("nodes", []):
            out[n].append((s.get("requested_t", s["t"]), t_end, s["fault"]))
    if heal is not None:
        for n in heal["killed"]:
            out[n].append((heal["t"], t_end, "heal"))
    return dict(out)


# How long after its invocation a request whose answer never came may still be running on its
# node: the client's timeout (6 s), then the write timeout (4 s) of a request the node goes on
# with, then the flush interval and slack.
AUDIT_UNANSWERED_SPAN_NS = 12_000_000_000


def applied_unanswered_writes(ops):
    """Writes whose answer never reached the client (``info`` with no answered call: a timeout
    or a reset) but which the history shows took effect, with the key each one names:
    ``[(op, action, key_id)]``. A ``create`` (key-set) whose alias a final list shows (the
    final list maps it to its KeyId, or a hosted data key's name to its DataKeyId: action
    GenerateDataKey); a ``schedule`` (deletion) whose key some DescribeKey saw
    pending deletion or gone (each key is scheduled once)."""
    created = {}
    scheduled = set()
    for o in ops:
        if o.type != "ok" or not isinstance(o.result, dict):
            continue
        if o.f == "final-list":
            created.update(o.result.get("key_ids") or {})
        elif o.f == "describe" and o.result.get("state") in ("PendingDelete", "Gone"):
            scheduled.add((o.value or {}).get("key"))
    out = []
    for o in ops:
        if o.type != "info" or o.extra.get("requests") or not isinstance(o.value, dict):
            continue
        if o.f == "create" and o.value.get("alias") in created:
            action = "GenerateDataKey" if o.value.get("data_key") else "CreateKey"
            out.append((o, action, created[o.value["alias"]]))
        elif o.f == "schedule" and o.value.get("key") in scheduled:
            out.append((o, "ScheduleKeyDeletion", o.value["key"]))
    return out


def audit_withheld(ops, nemesis_events, artifacts, t_end=INF):
    """The request ids of answers a node withheld because its audit trail had failed: raftkms
    refuses a request it cannot record with ``InternalError`` and writes no record of it
    (docs/security.md, "Fail closed"). So: answered ``InternalError``, no record of the request
    in any trail, on a node inside an ``fsync`` fault (the only fault that fails a trail; from
    100 ms + 1 s before its requested start to its stop). Other checkers must not read such an
    answer as the node's verdict on the request (``check_durability``)."""
    if not artifacts:
        return set()
    recorded = {rec.get("request_id") for t in artifacts.get("trails", {}).values()
                for rec in t.get("records", [])}
    fsync = {n: [w for w in ws if w[2] in AUDIT_WINDOW_FAULTS]
             for n, ws in audit_loss_windows(nemesis_events, t_end).items()}
    out = set()
    for o in ops:
        for c in o.extra.get("requests") or []:
            t = c.get("t", o.end)
            if c.get("code") == "InternalError" and c["id"] not in recorded and any(
                    answered_in(t, w) for w in fsync.get(c.get("node"), [])):
                out.add(c["id"])
    return out


def mark_audit_withheld(ops, withheld):
    """Marks ``extra["audit_withheld"]`` on the ops whose last answer was withheld (see
    ``audit_withheld``); returns how many."""
    n = 0
    for o in ops:
        if o.extra.get("request_id") in withheld:
            o.extra["audit_withheld"] = True
            n += 1
    return n


def withheld_after_record(c, rec, node, artifacts, windows):
    """Whether a call answered ``InternalError`` whose record names another result is an answer
    the node withheld after writing the record: the record of a write is appended with the
    write's result and must be synced before the answer; when that sync fails, the trail fails
    and the answer is withheld (``InternalError``). A kill of the node before it cut its failed
    trail back (``AuditLog::try_recover``) leaves the written line on disk, and the reopened
    trail continues after it. Excused only with the node's own word for it (its log names the
    request: "the answer is withheld", ``withheld_logged`` from ``audit.load``) and inside an
    ``fsync`` fault on that node (the only fault that fails a trail)."""
    if c.get("code") != "InternalError" or c.get("action") not in AUDIT_WRITE_ACTIONS:
        return False
    # Only a write's record is synced before its answer, and it names the write's own result.
    if rec.get("write") is not True or rec.get("result") == "InternalError":
        return False
    if c["id"] not in (artifacts.get("withheld_logged") or {}).get(node, ()):
        return False
    t = c.get("t")
    return t is not None and any(answered_in(t, w) for w in windows.get(node, [])
                                 if w[2] in AUDIT_WINDOW_FAULTS)


def _record_excerpt(trail, rec):
    return {"trail": trail, "file": rec.get("_file"), "line": rec.get("_line"),
            "seq": rec.get("seq"), "node_id": rec.get("node_id"), "action": rec.get("action"),
            "result": rec.get("result"), "write": rec.get("write"), "at_ms": rec.get("at_ms"),
            "request_id": rec.get("request_id")}


def check_audit(ops, nemesis_events, artifacts, t_end=INF):
    """The nodes' audit trails against the history (rkj/audit.py collects ``artifacts``).

    Every call a node answered (``requests`` of an op: request id, node, action, the code
    answered, when the answer was read) must have exactly one record, in the trail of that node
    (``node_id`` too), with that request id, action ``kms:<Action>`` and result (``Success`` or
    the code; a node that wrote a record and then withheld the answer because the record's sync
    failed is excused, ``withheld_after_record``). Missing:

    - the record of an acknowledged write (``AUDIT_WRITE_ACTIONS``, answered Success) is synced
      before the answer: missing is an anomaly whatever happened to the node
      (*missing-write-record*), and a found one must say ``"write": true``
      (*write-record-not-durable*);
    - any other record (reads, crypto, refusals, failed writes, whose records may or may not
      have been synced first) may be missing only if its node may have lost unsynced records
      (``audit_loss_windows``) from 1.1 s before the answer was read (flush interval and slack)
      to the answer: *excused*; otherwise *missing-record*.

    A write whose answer never came (a timeout or reset: no request id) but which took effect
    (``applied_unanswered_writes``: a create whose alias a final list shows, a deletion
    schedule whose key was seen pending or gone) was run by the node it was sent to: that node's
    trail has a record of the action naming the key, unless the node was killed within 12 s of
    the invocation (*applied-write-unrecorded*).

    A request id in more than one record, anywhere, is a *duplicate*. Every trail must verify
    (``raftkms audit verify``, exit status 0, against the cluster's checkpoints or at least
    offline): *trail-not-intact* names the problem it reported. Every checkpoint the cluster holds
    must name a record of one of its node's trails (*checkpoint-unmatched*; the CLI checks the
    same for trails it verified online, this also covers wiped and rejoined nodes).

    UNKNOWN: nothing collected, no answered call with a request id (nothing checked), a trail
    that could not be copied (its node's missing records are counted ``unchecked``), or a
    verify that could not run."""
    if not artifacts:
        return {"valid": None, "anomaly_count": 0, "anomalies": [],
                "unknown": "no audit artifacts were collected"}
    trails = artifacts.get("trails", {})
    unchecked_nodes = {e.get("node") for e in artifacts.get("errors", [])}
    by_rid = defaultdict(list)
    records_found = 0
    bad_lines = 0
    for name, t in sorted(trails.items()):
        bad_lines += t.get("bad_lines", 0)
        if t.get("unreadable"):
            unchecked_nodes.add(t["node"])
        for rec in t.get("records", []):
            records_found += 1
            by_rid[rec.get("request_id")].append((name, rec))
    windows = audit_loss_windows(nemesis_events, t_end)
    anomalies = []
    duplicates = {rid: entries for rid, entries in by_rid.items() if len(entries) > 1}
    calls_of = {}
    counts = {"answered_calls": 0, "answered_ops": 0, "records_matched": 0, "writes_checked": 0,
              "reads_excused": 0, "answers_withheld": 0, "missing": 0, "unchecked": 0,
              "unanswered_writes_applied": 0, "unanswered_writes_recorded": 0,
              "unanswered_writes_excused": 0, "withheld_after_record": 0}
    excused_by = defaultdict(int)
    excused = []  # the first few, as examples
    for o in ops:
        reqs = o.extra.get("requests") or []
        if reqs:
            counts["answered_ops"] += 1
        for c in reqs:
            counts["answered_calls"] += 1
            calls_of[c["id"]] = (o, c)
            node = c.get("node")
            found = by_rid.get(c["id"], [])
            durable = c.get("action") in AUDIT_WRITE_ACTIONS and c.get("code") is None
            base = {"request_id": c["id"], "node": node, "action": c.get("action"),
                    "code": c.get("code"), "answered_at": c.get("t"), "op": o.to_json()}
            if not found:
                if node in unchecked_nodes:
                    counts["unchecked"] += 1
                    continue
                if durable:
                    counts["missing"] += 1
                    anomalies.append(dict(base, type="missing-write-record",
                                          windows=windows.get(node, [])))
                    continue
                t = c.get("t", o.end)
                hit = [w for w in windows.get(node, []) if answered_in(t, w)]
                if hit:
                    counts["reads_excused"] += 1
                    if c.get("code") == "InternalError" and hit[0][2] in AUDIT_WINDOW_FAULTS:
                        counts["answers_withheld"] += 1
                    excused_by[hit[0][2]] += 1
                    if len(excused) < 5:
                        excused.append({"request_id": c["id"], "node": node,
                                        "action": c.get("action"), "code": c.get("code"),
                                        "answered_at": t, "window": hit[0],
                                        "answer_to_fault_ms": round((hit[0][0] - t) / 1e6, 1)})
                else:
                    counts["missing"] += 1
                    anomalies.append(dict(base, type="missing-record",
                                          windows=windows.get(node, [])))
                continue
            if len(found) > 1:
                continue  # reported below, once per request id
            name, rec = found[0]
            counts["records_matched"] += 1
            problems = []
            if node is not None and (trails[name]["node"] != node or rec.get("node_id") != node):
                problems.append("wrong-node")
            if rec.get("result") != (c.get("code") or "Success"):
                if withheld_after_record(c, rec, node, artifacts, windows):
                    counts["withheld_after_record"] += 1
                else:
                    problems.append("result-mismatch")
            if c.get("action") and rec.get("action") != "kms:" + c["action"]:
                problems.append("action-mismatch")
            if durable:
                counts["writes_checked"] += 1
                if rec.get("write") is not True:
                    problems.append("write-record-not-durable")
            for p in problems:
                anomalies.append(dict(base, type=p, record=_record_excerpt(name, rec)))
    # Writes that took effect although their answer never came (no request id to look up): the
    # node that received the request ran it, so it has a record of it naming the key, unless it
    # was killed while the request could still be running (then excused).
    by_action_key = defaultdict(list)
    for name, t in trails.items():
        for rec in t.get("records", []):
            for k in rec.get("key_ids") or []:
                by_action_key[(rec.get("action"), k)].append((name, rec))
    for o, action, key_id in applied_unanswered_writes(ops):
        counts["unanswered_writes_applied"] += 1
        found = by_action_key.get(("kms:" + action, key_id), [])
        base = {"node": o.node, "action": action, "key_id": key_id, "op": o.to_json()}
        if any(trails[name]["node"] == o.node for name, _ in found):
            counts["unanswered_writes_recorded"] += 1
        elif found:
            anomalies.append(dict(base, type="wrong-node",
                                  record=_record_excerpt(*found[0])))
        elif o.node in unchecked_nodes:
            counts["unchecked"] += 1
        elif any(w[0] <= o.start + AUDIT_UNANSWERED_SPAN_NS and o.start <= w[1]
                 for w in windows.get(o.node, [])):
            counts["unanswered_writes_excused"] += 1
        else:
            anomalies.append(dict(base, type="applied-write-unrecorded",
                                  windows=windows.get(o.node, [])))
    for rid, entries in sorted(duplicates.items(), key=lambda kv: str(kv[0])):
        d = {"type": "duplicate", "request_id": rid,
             "records": [_record_excerpt(n, r) for n, r in entries]}
        if rid in calls_of:
            d["op"] = calls_of[rid][0].to_json()
        anomalies.append(d)
    # The trails themselves: raftkms audit verify.
    unknown = []
    verify_summary = {}
    for name, t in sorted(trails.items()):
        if t.get("absent"):
            verify_summary[name] = "absent"
            continue
        v = (artifacts.get("verify") or {}).get(name)
        if v is None or v.get("report") is None:
            unknown.append("trail %s was not verified: %s" % (
                name, (v or {}).get("stderr") or "no verify result"))
            verify_summary[name] = "not verified"
            continue
        rep = v["report"]
        verify_summary[name] = {"mode": v.get("mode"), "status": v.get("status"),
                                "records": rep.get("records"),
                                "checkpoints_checked": rep.get("checkpoints_checked"),
                                "problem": rep.get("problem")}
        if v.get("status") != 0 or rep.get("problem") is not None:
            anomalies.append({"type": "trail-not-intact", "trail": name, "node": t["node"],
                              "mode": v.get("mode"), "problem": rep.get("problem"),
                              "stderr": v.get("stderr"), "records": rep.get("records")})
        copy = v.get("copy")
        if copy is not None:  # the artifact's own chain (the live trail was verified above)
            crep = copy.get("report")
            verify_summary[name]["copy"] = None if crep is None else crep.get("problem")
            if crep is None:
                unknown.append("the copy of trail %s was not verified: %s" % (
                    name, copy.get("stderr")))
            elif copy.get("status") != 0 or crep.get("problem") is not None:
                anomalies.append({"type": "trail-not-intact", "trail": name,
                                  "node": t["node"], "mode": "offline (the copy)",
                                  "problem": crep.get("problem"), "stderr": copy.get("stderr"),
                                  "records": crep.get("records")})
    # The cluster's checkpoints name records of the trails (also those of wiped nodes).
    checkpoints = artifacts.get("checkpoints")
    cp_checked = 0
    if checkpoints is not None:
        heads = defaultdict(set)
        for name, t in trails.items():
            for rec in t.get("records", []):
                heads[t["node"]].add((rec.get("seq"), rec.get("hash")))
        for cp in checkpoints:
            n = cp.get("node_id")
            if n in unchecked_nodes:
                continue
            cp_checked += 1
            if (cp.get("seq"), cp.get("hash")) not in heads.get(n, set()):
                anomalies.append({"type": "checkpoint-unmatched", "checkpoint": cp,
                                  "trails": sorted(k for k, t in trails.items()
                                                   if t["node"] == n)})
    if unchecked_nodes:
        errors = [e.get("error", "?") for e in artifacts.get("errors", [])]
        unknown.append("trails not collected (nodes %s): %s" % (
            sorted(unchecked_nodes, key=str), "; ".join(errors)))
    without_op = sum(len(e) for rid, e in by_rid.items() if rid not in calls_of)
    admin_records = sum(1 for entries in by_rid.values() for _, r in entries
                        if r.get("dialect") == "admin")
    out = _result(anomalies, trails=len(trails), records_found=records_found,
                  records_without_op=without_op, admin_records=admin_records,
                  duplicates=len(duplicates),
                  bad_lines=bad_lines, excused_by=dict(excused_by), excused_examples=excused,
                  checkpoints_checked=cp_checked, verify=verify_summary, **counts)
    if checkpoints is None:
        # The cluster was down: the trails were verified offline (the chain alone).
        out["checkpoints"] = "unavailable: %s" % artifacts.get("checkpoints_error")
    if counts["answered_calls"] == 0:
        out["valid"] = None if not anomalies else False
        unknown.insert(0, "no answered op carried a request id: nothing was checked")
    if unknown:
        out["unknown_reasons"] = unknown
        if not anomalies:
            out["valid"] = None
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
