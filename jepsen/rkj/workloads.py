"""Workloads: what the clients do, how a reply becomes a completion, and the final reads.

Every op is one real API call through one node, recorded as an invocation and a completion. No
write is ever retried (the TiDB lesson): an unknown outcome is ``info`` and the process retires.
"""

import base64
import http.client
import json
import os
import random
import struct
import threading
import time
import uuid

from . import checkers
from .client import HuaweiClient, KmsClient, V2Client, _connection

MAX_OPS_PER_REGISTER_KEY = 120  # keeps each key's linearizability search small


def b64(data):
    return base64.b64encode(data).decode()


def blob_version(blob_b64):
    """Material version from a ciphertext blob's header (bytes 18..22, big-endian)."""
    raw = base64.b64decode(blob_b64)
    return struct.unpack(">I", raw[18:22])[0]


class Workload:
    name = "?"
    needs_faketime = False
    # Node [timing] settings this workload needs (merged over the harness's).
    timing = {}

    def __init__(self, ctx):
        self.ctx = ctx
        self.rng = random.Random(ctx.seed)
        self.lock = threading.Lock()

    def setup(self):
        pass

    def next_op(self, worker_rng):
        raise NotImplementedError

    def invoke(self, client, f, value):
        raise NotImplementedError

    def final(self):
        pass

    def dedicated(self):
        """Processes of the workload's own besides the clients: ``[(name, fn)]``; the runner runs
        each ``fn(stop, rng)`` in a thread alongside the clients until ``stop`` is set, and fn
        records its ops in the history itself (process numbers that are not integers, so they
        never meet a client's)."""
        return []

    def check(self, ops):
        raise NotImplementedError

    def setup_call(self, action, params):
        """A setup call (not part of the history), retried until the cluster takes it."""
        return self.ctx.setup_call(action, params)


# ---------------------------------------------------------------------- key-set


class KeySet(Workload):
    """CreateKey adds an element (its alias), and so does GenerateDataKey with IsHostedByKms
    (a hosted data key's name, under one key made at setup); a read lists the whole set:
    ListKeyDetail and ListDataKeyDetail."""

    name = "key-set"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.counter = 0
        self.prefix = "js%s" % uuid.uuid4().hex[:6]
        self.cmk = None

    def setup(self):
        r = self.setup_call("CreateKey", {"Alias": "%s-cmk" % self.prefix})
        self.cmk = r.fields["KeyId"]

    def next_op(self, rng):
        if rng.random() < 0.06:
            return "list", None
        with self.lock:
            self.counter += 1
            n = self.counter
        if rng.random() < 0.3:
            return "create", {"alias": "%s-d%d" % (self.prefix, n), "data_key": True}
        return "create", {"alias": "%s-%d" % (self.prefix, n)}

    def _pages(self, client, action, items_field, name_field, id_field):
        """Pages through ``action`` for this run's elements: ``(last reply, [(name, id)])``, None
        for the list if a page failed."""
        found = []
        offset = 0
        while True:
            r = client.call(action, {"Offset": offset, "Limit": 200, "OrderType": 1,
                                     "SearchKeyAlias": self.prefix},
                            write=False, timeout=8)
            if r.kind != "ok":
                return r, None
            items = r.fields.get(items_field) or []
            found += [(m.get(name_field), m.get(id_field)) for m in items]
            if len(items) < 200 or offset > 100_000:
                return r, found
            offset += 200

    def list_all(self, client):
        """Keys then hosted data keys of this run: ``(last reply, [(alias or name, id)])``, None
        for the list if a page failed."""
        r, keys = self._pages(client, "ListKeyDetail", "KeyMetadatas", "Alias", "KeyId")
        if keys is None:
            return r, None
        r, data_keys = self._pages(client, "ListDataKeyDetail", "DataKeyMetadatas",
                                   "DataKeyName", "DataKeyId")
        if data_keys is None:
            return r, None
        return r, keys + data_keys

    def invoke(self, client, f, value):
        if f == "create" and value.get("data_key"):
            r = client.call("GenerateDataKey", {"KeyId": self.cmk, "KeySpec": "AES_128",
                                                "IsHostedByKms": 1, "DataKeyName": value["alias"]},
                            write=True)
            if r.kind == "ok":
                return "ok", {"data_key_id": r.fields.get("DataKeyId")}, None
            return r.kind, None, r.code
        if f == "create":
            r = client.call("CreateKey", {"Alias": value["alias"], "Description": "jepsen"},
                            write=True)
            if r.kind == "ok":
                return "ok", {"key_id": r.fields.get("KeyId")}, None
            return r.kind, None, r.code
        r, keys = self.list_all(client)
        if keys is None:
            return "fail", None, r.code
        cmk_alias = "%s-cmk" % self.prefix
        ours = [(a, k) for a, k in keys if a and a.startswith(self.prefix) and a != cmk_alias]
        out = {"aliases": [a for a, _ in ours]}
        if f == "final-list":
            # Which key (or data key) each element names: the audit checker looks for the
            # record of a create whose answer was lost but which took effect.
            out["key_ids"] = dict(ours)
        return "ok", out, None

    def final(self):
        for i in self.ctx.live_nodes():
            self.ctx.final_op(i, "final-list", None, lambda c: self.invoke(c, "final-list", None))

    def check(self, ops):
        return {"key-set": checkers.check_set(ops)}


# ---------------------------------------------------------------------- register


class Register(Workload):
    """Key state as a register: EnableKey/DisableKey/UpdateKeyDescription write, DescribeKey
    and Encrypt read (linearizable). A few keys are active at a time; each is retired after
    MAX_OPS_PER_REGISTER_KEY ops so the per-key search stays small. With ``stale_reads`` some
    DescribeKeys ask for a stale answer (checked separately: existing state, honest lag)."""

    name = "register"

    def __init__(self, ctx, active=3, pool=40, stale_reads=False):
        super().__init__(ctx)
        self.active = active
        self.pool_size = pool
        self.stale_reads = stale_reads
        self.pool = []
        self.slots = []
        self.counts = {}
        self.desc_counter = 0

    def setup(self):
        for n in range(self.pool_size):
            r = self.setup_call("CreateKey", {"Alias": "reg-%s-%d" % (uuid.uuid4().hex[:6], n)})
            self.pool.append(r.fields["KeyId"])
        self.slots = [self.pool.pop() for _ in range(self.active)]

    def pick_key(self, rng):
        with self.lock:
            s = rng.randrange(len(self.slots))
            key = self.slots[s]
            self.counts[key] = self.counts.get(key, 0) + 1
            if self.counts[key] >= MAX_OPS_PER_REGISTER_KEY and self.pool:
                self.slots[s] = self.pool.pop()
            return key

    def next_op(self, rng):
        key = self.pick_key(rng)
        x = rng.random()
        if x < 0.15:
            return "enable", {"key": key}
        if x < 0.30:
            return "disable", {"key": key}
        if x < 0.45:
            with self.lock:
                self.desc_counter += 1
                d = "d%d" % self.desc_counter
            return "set-desc", {"key": key, "desc": d}
        if x < 0.72:
            return "describe", {"key": key}
        if self.stale_reads and x < 0.86:
            return "stale-describe", {"key": key}
        return "encrypt", {"key": key}

    def invoke(self, client, f, value):
        key = value["key"]
        if f in ("enable", "disable"):
            r = client.call("EnableKey" if f == "enable" else "DisableKey", {"KeyId": key},
                            write=True)
            return r.kind, None, r.code
        if f == "set-desc":
            r = client.call("UpdateKeyDescription", {"KeyId": key, "Description": value["desc"]},
                            write=True)
            return r.kind, None, r.code
        if f in ("describe", "stale-describe"):
            stale = f == "stale-describe"
            r = client.call("DescribeKey", {"KeyId": key}, write=False, stale=stale)
            if r.kind != "ok":
                return "fail", None, r.code
            m = r.fields.get("KeyMetadata") or {}
            res = {"enabled": m.get("KeyState") == "Enabled", "desc": m.get("Description", "")}
            if m.get("KeyState") not in ("Enabled", "Disabled"):
                res["state"] = m.get("KeyState")
            if stale:
                h = r.headers
                for name, field in (("x-raftkms-applied-index", "applied"),
                                    ("x-raftkms-commit-index", "commit"),
                                    ("x-raftkms-leader-contact-ms", "contact_ms")):
                    if h.get(name) is not None:
                        res[field] = int(h[name])
            return "ok", res, None
        if f == "encrypt":
            r = client.call("Encrypt", {"KeyId": key, "Plaintext": b64(b"register")}, write=False)
            if r.kind == "ok":
                return "ok", {"enabled": True}, None
            if r.code == "ResourceUnavailable.CmkDisabled":
                return "ok", {"enabled": False}, None
            return "fail", None, r.code
        raise ValueError(f)

    def final(self):
        keys = [k for k in self.counts]
        for i in self.ctx.live_nodes():
            for k in keys:
                self.ctx.final_op(i, "describe", {"key": k},
                                  lambda c, k=k: self.invoke(c, "describe", {"key": k}))

    def check(self, ops):
        out = {"register": checkers.check_register(ops),
               "encrypt-after-disable": checkers.check_encrypt_after_disable(ops)}
        if self.stale_reads:
            out["stale-reads"] = checkers.check_stale_reads(ops)
        return out


class StaleMinority(Register):
    """The register with stale DescribeKeys mixed in; run it with a partition nemesis."""

    name = "stale"

    def __init__(self, ctx):
        super().__init__(ctx, stale_reads=True)


class LeaseRegister(Register):
    """The register on a cluster with follower read leases (``timing.holder-lease-ms``):
    followers answer DescribeKey and Encrypt from their own state under their leases. The same
    checkers: every read linearizable (a leased read that missed an acknowledged write is an
    anomaly), no Encrypt after an acknowledged DisableKey. Run it with ``pause`` (a holder stopped
    past its lease), ``partition``, ``isolate`` and ``kill``."""

    name = "lease"
    # Elections well after the leader stops counting a lost holder's lease (600 ms; the holder
    # uses 300 of it): a cut-off holder keeps its term, and so the lease it held, for at least
    # 900 ms after the others acknowledge writes without it; only its own clock ends that
    # lease (a holder whose
    # election timer fired earlier is fenced by its new term, which would hide a lease-expiry
    # bug). Learners, which hold leases and never start elections, are in that position for
    # as long as they are cut off.
    # The heartbeat is also openraft 0.9's timeout of every append (docs/multi-region.md): 300
    # ms lets a follower behind the latency proxy (``slow-follower``, round trips up to
    # 2 x 108 ms) keep receiving appends, and so keep its lease, while it lags.
    timing = {"holder-lease-ms": 600, "heartbeat-ms": 300, "election-min-ms": 1500,
              "election-max-ms": 2000}
    # Twice the usual workers: a worker whose write went to a cut-off node waits out its
    # timeout, and reads must still reach that node while it is cut off.
    workers_per_node = 4

    def __init__(self, ctx):
        super().__init__(ctx)
        self.holder_reads = {}
        # Each node's lease grants as leader, and how many of them were dated by the
        # acknowledgements of appends already sent rather than a confirmation round of their own.
        self.grants = {}

    def final(self):
        super().final()
        # How many reads each node served under its follower lease (its /metrics), so a run
        # in which no follower ever held a lease cannot pass as a lease test.
        from .client import _connection
        c = self.ctx.cluster
        for i in self.ctx.live_nodes():
            try:
                conn = _connection(c.nodes[i].api, c.api_tls, 5.0)
                conn.request("GET", "/metrics")
                text = conn.getresponse().read().decode()
                conn.close()
            except (OSError, ValueError) as e:
                self.holder_reads[i] = "unreadable: %s" % e
                continue
            for line in text.splitlines():
                if line.startswith("raftkms_holder_reads_total "):
                    self.holder_reads[i] = float(line.split()[1])
                for name, key in (("raftkms_lease_grants_total ", "granted"),
                                  ("raftkms_lease_grants_from_acks_total ", "from_acks")):
                    if line.startswith(name):
                        self.grants.setdefault(i, {})[key] = float(line.split()[1])

    def check(self, ops):
        out = super().check(ops)
        served = sum(v for v in self.holder_reads.values() if isinstance(v, float))
        out["leased-reads"] = {"valid": True if served > 0 else None,
                               "holder_reads": self.holder_reads, "grants": self.grants}
        return out


class Dialects(Register):
    """The register over three APIs at once: each op goes through API 3.0, the legacy v2 API or
    the Huawei API, chosen at random, on the same keys (disable through one, encrypt or describe
    through another). The same checkers: every read linearizable whichever API made the write,
    and no Encrypt succeeds after an acknowledged DisableKey through any API."""

    name = "dialects"
    DIALECTS = ("tencent", "v2", "huawei")

    def next_op(self, rng):
        f, value = super().next_op(rng)
        # The legacy API cannot change a description, nor read stale.
        choices = [d for d in self.DIALECTS if not (d == "v2" and f == "set-desc")]
        value["via"] = rng.choice(choices)
        return f, value

    def invoke(self, client, f, value):
        via = value.get("via", "tencent")
        if via == "tencent":
            return super().invoke(client, f, value)
        key = value["key"]
        if via == "v2":
            c = V2Client(client)
            if f in ("enable", "disable"):
                r = c.call("EnableKey" if f == "enable" else "DisableKey", {"keyId": key}, write=True)
                return r.kind, None, r.code
            if f == "describe":
                r = c.call("GetKeyAttributes", {"keyId": key}, write=False)
                if r.kind != "ok":
                    return "fail", None, r.code
                m = r.fields.get("keyMetadata") or {}
                res = {"enabled": m.get("keyState") == "Enabled", "desc": m.get("description", "")}
                if m.get("keyState") not in ("Enabled", "Disabled"):
                    res["state"] = m.get("keyState")
                return "ok", res, None
            if f == "encrypt":
                r = c.call("Encrypt", {"keyId": key, "plaintext": b64(b"register")}, write=False)
                if r.kind == "ok":
                    return "ok", {"enabled": True}, None
                if r.code == "v2.4550":
                    return "ok", {"enabled": False}, None
                return "fail", None, r.code
        if via == "huawei":
            c = HuaweiClient(client, self.ctx.cluster.uin)
            if f in ("enable", "disable"):
                r = c.call("enable-key" if f == "enable" else "disable-key", {"key_id": key}, write=True)
                # "Already enabled" / "already disabled": a definite no-op, which the register
                # checker reads as a write that did not happen.
                return r.kind, None, r.code
            if f == "set-desc":
                r = c.call("update-key-description", {"key_id": key, "key_description": value["desc"]},
                           write=True)
                return r.kind, None, r.code
            if f == "describe":
                r = c.call("describe-key", {"key_id": key}, write=False)
                if r.kind != "ok":
                    return "fail", None, r.code
                m = r.fields.get("key_info") or {}
                res = {"enabled": m.get("key_state") == "2", "desc": m.get("key_description", "")}
                if m.get("key_state") not in ("2", "3"):
                    res["state"] = m.get("key_state")
                return "ok", res, None
            if f == "encrypt":
                r = c.call("encrypt-data", {"key_id": key, "plain_text": "register"}, write=False)
                if r.kind == "ok":
                    return "ok", {"enabled": True}, None
                if r.code == "KMS.0209":
                    return "ok", {"enabled": False}, None
                return "fail", None, r.code
        raise ValueError((via, f))

    def check(self, ops):
        out = super().check(ops)
        # A run in which one API was never answered cannot pass as a three-API test.
        answered = {}
        for op in ops:
            if op.type == "ok" and isinstance(op.value, dict) and op.value.get("via"):
                answered[op.value["via"]] = answered.get(op.value["via"], 0) + 1
        out["every-api-answered"] = {"valid": True if all(answered.get(d) for d in self.DIALECTS) else None,
                                     "ok_ops_per_api": answered}
        return out


# ---------------------------------------------------------------------- crypto


class Crypto(Workload):
    """Rotation and ciphertext durability: Encrypt (the blob names the material version),
    Decrypt of earlier blobs, RotateKey, and hosted data keys: GenerateDataKey with
    IsHostedByKms (a write) and GetDataKeyPlaintext of earlier ones. Final: every acknowledged
    blob decrypts, and every acknowledged hosted data key reads back, to its plaintext on every
    node, and every node encrypts under the same newest version."""

    name = "crypto"

    def __init__(self, ctx, keys=3):
        super().__init__(ctx)
        self.nkeys = keys
        self.keys = []
        self.blobs = []  # (key, blob, plaintext b64) of acknowledged encrypts
        self.data_keys = []  # (key, DataKeyId, plaintext b64) of acknowledged hosted data keys
        self.dk_counter = 0
        self.dk_prefix = "dk%s" % uuid.uuid4().hex[:6]

    def setup(self):
        for n in range(self.nkeys):
            r = self.setup_call("CreateKey", {"Alias": "cr-%s-%d" % (uuid.uuid4().hex[:6], n)})
            self.keys.append(r.fields["KeyId"])

    def next_op(self, rng):
        key = rng.choice(self.keys)
        x = rng.random()
        if x < 0.12:
            return "rotate", {"key": key}
        if x < 0.35:
            with self.lock:
                if self.blobs:
                    k, blob, pt = rng.choice(self.blobs)
                    return "decrypt", {"key": k, "blob": blob, "pt": pt}
        if x < 0.42:
            with self.lock:
                self.dk_counter += 1
                n = self.dk_counter
            return "generate-data-key", {"key": key, "name": "%s-%d" % (self.dk_prefix, n)}
        if x < 0.50:
            with self.lock:
                if self.data_keys:
                    k, dk, pt = rng.choice(self.data_keys)
                    return "read-data-key", {"key": k, "blob": dk, "pt": pt}
        return "encrypt", {"key": key, "pt": b64(os.urandom(12))}

    def invoke(self, client, f, value):
        if f == "rotate":
            r = client.call("RotateKey", {"KeyId": value["key"]}, write=True)
            return r.kind, None, r.code
        if f == "encrypt":
            r = client.call("Encrypt", {"KeyId": value["key"], "Plaintext": value["pt"]},
                            write=False)
            if r.kind != "ok":
                return "fail", None, r.code
            blob = r.fields.get("CiphertextBlob", "")
            with self.lock:
                self.blobs.append((value["key"], blob, value["pt"]))
            return "ok", {"blob": blob, "version": blob_version(blob)}, None
        if f == "decrypt":
            r = client.call("Decrypt", {"CiphertextBlob": value["blob"]}, write=False)
            if r.kind == "ok":
                return "ok", {"pt": r.fields.get("Plaintext")}, None
            return "fail", None, r.code
        if f == "generate-data-key":
            r = client.call("GenerateDataKey", {"KeyId": value["key"], "KeySpec": "AES_256",
                                                "IsHostedByKms": 1, "DataKeyName": value["name"]},
                            write=True)
            if r.kind != "ok":
                return r.kind, None, r.code
            dk, pt = r.fields.get("DataKeyId", ""), r.fields.get("Plaintext")
            with self.lock:
                self.data_keys.append((value["key"], dk, pt))
            # `blob` names what later reads read (the DataKeyId), as for Encrypt.
            return "ok", {"blob": dk}, None
        if f == "read-data-key":
            r = client.call("GetDataKeyPlaintext", {"DataKeyId": value["blob"]}, write=False)
            if r.kind == "ok":
                return "ok", {"pt": r.fields.get("Plaintext")}, None
            return "fail", None, r.code
        raise ValueError(f)

    def final(self):
        with self.lock:
            blobs = list(self.blobs)
            data_keys = list(self.data_keys)
        # Bounded: at most 400 blobs (newest and oldest first) and 200 data keys on every node.
        if len(blobs) > 400:
            blobs = blobs[:100] + self.rng.sample(blobs[100:-100], 200) + blobs[-100:]
        if len(data_keys) > 200:
            data_keys = data_keys[:50] + self.rng.sample(data_keys[50:-50], 100) + data_keys[-50:]
        for i in self.ctx.live_nodes():
            for k in self.keys:
                v = {"key": k, "pt": b64(b"final")}
                self.ctx.final_op(i, "final-encrypt", v,
                                  lambda c, v=v: self.invoke(c, "encrypt", v))
            for k, blob, pt in blobs:
                v = {"key": k, "blob": blob, "pt": pt}
                self.ctx.final_op(i, "final-decrypt", v,
                                  lambda c, v=v: self.invoke(c, "decrypt", v))
            for k, dk, pt in data_keys:
                v = {"key": k, "blob": dk, "pt": pt}
                self.ctx.final_op(i, "final-read-data-key", v,
                                  lambda c, v=v: self.invoke(c, "read-data-key", v))

    def check(self, ops):
        return {"rotation": checkers.check_rotation(ops),
                "durability": checkers.check_durability(ops)}


# ---------------------------------------------------------------------- deletion


class Deletion(Workload):
    """ScheduleKeyDeletion (7-day window) on keys while node clocks are skewed; DescribeKey
    watches them. No key may become Deleted before its window has passed by some node's clock
    (the nemesis timeline says which clock was where)."""

    name = "deletion"
    needs_faketime = True

    def __init__(self, ctx):
        super().__init__(ctx)
        self.keys = []
        self.fresh = []
        self.scheduled = set()

    def setup(self):
        for n in range(40):
            r = self.setup_call("CreateKey", {"Alias": "del-%s-%d" % (uuid.uuid4().hex[:6], n)})
            self.keys.append(r.fields["KeyId"])
            # Only a disabled key may be scheduled for deletion (as Tencent).
            self.setup_call("DisableKey", {"KeyId": r.fields["KeyId"]})
        self.fresh = list(self.keys)

    def next_op(self, rng):
        with self.lock:
            # Spread over the run (about one a second), so schedules meet every clock state.
            if self.fresh and rng.random() < 0.03:
                key = self.fresh.pop()
                self.scheduled.add(key)
                return "schedule", {"key": key, "days": 7}
            pool = list(self.scheduled) or self.keys
        key = rng.choice(pool)
        if rng.random() < 0.2:
            return "set-desc", {"key": key, "desc": "x%d" % rng.randrange(10**6)}
        return "describe", {"key": key}

    def invoke(self, client, f, value):
        key = value["key"]
        if f == "schedule":
            r = client.call("ScheduleKeyDeletion", {"KeyId": key, "PendingWindowInDays":
                                                    value["days"]}, write=True)
            if r.kind == "ok":
                return "ok", {"deletion_date": r.fields.get("DeletionDate")}, None
            return r.kind, None, r.code
        if f == "set-desc":
            r = client.call("UpdateKeyDescription", {"KeyId": key, "Description": value["desc"]},
                            write=True)
            return r.kind, None, r.code
        if f == "describe":
            r = client.call("DescribeKey", {"KeyId": key}, write=False)
            if r.kind == "ok":
                m = r.fields.get("KeyMetadata") or {}
                return "ok", {"state": m.get("KeyState"),
                              "deletion_date": m.get("DeletionDate")}, None
            if r.code == "ResourceUnavailable.CmkNotFound":
                return "ok", {"state": "Gone"}, None
            return "fail", None, r.code
        raise ValueError(f)

    # How far past the furthest clock of the run every clock moves in the last phase: past every
    # 7-day window, and then some.
    PAST_WINDOWS_S = 8 * 86400

    def final(self):
        # First at healed clocks: a key some node deleted early during the run shows here, judged
        # against the clocks the run had.
        self._describe_all(past_windows=False)
        # Then every node's clock moves past every window (noted in the clock timeline like a
        # nemesis change), so each run exercises deletion whatever its nemesis was: the keys whose
        # schedule was acknowledged must now go, and no node may keep one.
        ctx = self.ctx
        live = ctx.live_nodes()
        # A schedule made while the leader's clock was pushed ahead is due that much later: go
        # past the furthest any clock has been, plus the window.
        ahead = max([s for _t, _n, s in ctx.clock_timeline()] + [0]) + self.PAST_WINDOWS_S
        for i in live:
            ctx.nemesis.set_skew(i, ahead)
        for i in live:
            ctx.cluster.verify_clock(i, ahead)
        # Clients on the nodes' hosts sign with the nodes' clocks (TC3's 5-minute window).
        ctx.colocated = True
        # Give the leader's scheduler (1 s interval) time to delete them all; the recorded reads
        # below judge what it did.
        pending = list(self.keys)
        deadline = time.time() + 20
        while pending and time.time() < deadline:
            r = ctx.client(live[0]).call("DescribeKey", {"KeyId": pending[-1]}, write=False)
            state = ((r.fields or {}).get("KeyMetadata") or {}).get("KeyState") \
                if r.kind == "ok" else None
            if r.code == "ResourceUnavailable.CmkNotFound" or (state and state != "PendingDelete"):
                pending.pop()
            else:
                time.sleep(0.5)
        self._describe_all(past_windows=True)

    def _describe_all(self, past_windows):
        for i in self.ctx.live_nodes():
            for k in self.keys:
                v = {"key": k, "past_windows": past_windows}
                self.ctx.final_op(i, "describe", v, lambda c, v=v: self.invoke(c, "describe", v))

    def check(self, ops):
        return {"deletion": checkers.check_deletion(ops, self.ctx.clock_timeline(),
                                                    self.ctx.history.wall)}


# ---------------------------------------------------------------------- policy


def allow_document(action):
    """A CAM policy document allowing ``action`` on every resource."""
    return json.dumps({"version": "2.0",
                       "statement": [{"effect": "allow", "action": action, "resource": "*"}]},
                      separators=(",", ":"))


class Policy(Workload):
    """Policies changed under faults. A sub-user (``jepsen-user``, with its own credential)
    encrypts with one key through random nodes (linearizable, no retries), allowed by the policy
    ``toggle`` attached to it; one dedicated process replaces that policy's document every
    0.5-1 s, alternately with one that allows only kms:DescribeKey (``revoke``) and one that
    allows kms:Encrypt again (``grant``), through the leader's admin endpoint. Checked by
    ``policy-revocation``: no Encrypt that began after a revoke was acknowledged succeeds before
    the next grant is invoked."""

    name = "policy"
    USER = "jepsen-user"
    POLICY = "toggle"
    GRANT = allow_document("kms:Encrypt")
    REVOKE = allow_document("kms:DescribeKey")
    ADMIN_TIMEOUT_S = 6.0  # as the clients' op timeout (the nodes' write timeout is 4 s)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.uin = None
        self.key = None
        self.secret_id = None
        self.secret_key = None

    # ------------------------------------------------------------------ admin calls

    def admin_call(self, i, method, path, body):
        """One admin request to node i's internal listener (mutual TLS with the run's admin
        certificate): ``(status, document, error)``; status None if nothing came back, -1 if
        the connection was refused (the request never reached a server)."""
        c = self.ctx.cluster
        conn = _connection(c.nodes[i].raft, c.admin_tls, self.ADMIN_TIMEOUT_S)
        headers = {"X-Raftkms-Cluster": c.cluster_id}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
        except ConnectionRefusedError as e:
            return -1, None, "transport.refused: %s" % e
        except (OSError, http.client.HTTPException) as e:  # a TLS failure is an OSError
            return None, None, "transport: %s" % e
        finally:
            conn.close()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = None
        err = None
        if status >= 300:
            err = "http.%d: %s" % (status, (doc or {}).get("error") if isinstance(doc, dict)
                                   else raw[:200].decode("utf-8", "replace"))
        return status, doc, err

    def admin_targets(self):
        """The leader first (found as the harness's other admin writes find it), then the other
        running nodes; paused ones last (they would only time out)."""
        c = self.ctx.cluster
        live = [i for i in self.ctx.live_nodes() if c.nodes[i].alive()]
        live.sort(key=lambda i: c.nodes[i].paused)
        lead = c.leader(timeout=1.0)
        first = [lead] if lead in live and not c.nodes[lead].paused else []
        return first + [i for i in live if i != lead]

    def admin_write(self, method, path, body, targets):
        """One admin write as an op, sent to ``targets`` (``admin_targets``) in turn:
        ``(kind, result, error)``. A node that did not lead and
        named the leader (421), or refused the connection, definitely did nothing: the request
        goes to the named leader or the next node. Otherwise 200 is ok, a transport failure or
        5xx unknown (``info``: the change may or may not have happened), any other refusal
        ``fail``."""
        c = self.ctx.cluster
        targets = list(targets)
        tried = []
        last = "no live node"
        while targets and len(tried) < 2 * len(c.nodes):
            i = targets.pop(0)
            tried.append(i)
            status, doc, err = self.admin_call(i, method, path, body)
            if status == 200:
                return "ok", {"via": i}, None
            last = err
            if status == -1:
                continue
            if status == 421:
                hinted = c.node_at((doc or {}).get("leader")) if isinstance(doc, dict) else None
                if hinted is not None and hinted not in tried:
                    targets.insert(0, hinted)
                continue
            if status is None or status >= 500:
                return "info", {"via": i}, err
            return "fail", {"via": i}, err
        return "fail", {"tried": tried}, last

    def setup_admin(self, method, path, body, deadline_s=60):
        """A setup call (not in the history), retried until the cluster takes it. A retried
        create that answers 409 was taken by an earlier attempt whose answer was lost."""
        deadline = time.time() + deadline_s
        last = None
        attempts = 0
        while time.time() < deadline:
            for i in self.admin_targets():
                status, doc, err = self.admin_call(i, method, path, body)
                if status == 200:
                    return doc
                if status == 409 and attempts > 0:
                    return None
                attempts += 1
                last = err
            time.sleep(0.5)
        raise RuntimeError("setup %s %s failed: %s" % (method, path, last))

    # ------------------------------------------------------------------ setup

    def find_uin(self):
        """The account of the run's credential (made at boot), from the credential list."""
        for cred in self.setup_admin("GET", "/admin/credentials", None) or []:
            if cred.get("secret_id") == self.ctx.cluster.secret_id:
                return int(cred["uin"])
        raise RuntimeError("the run's credential is not in /admin/credentials")

    def setup(self):
        self.uin = self.find_uin()
        r = self.setup_call("CreateKey", {"Alias": "pol-%s" % uuid.uuid4().hex[:6]})
        self.key = r.fields["KeyId"]
        base = "/admin/accounts/%d" % self.uin
        self.setup_admin("POST", base + "/identities", {"kind": "user", "name": self.USER})
        cred = self.setup_admin("POST", "%s/users/%s/credentials" % (base, self.USER), {})
        self.secret_id, self.secret_key = cred["secret_id"], cred["secret_key"]
        self.setup_admin("POST", base + "/policies", {"name": self.POLICY,
                                                      "document": self.GRANT})
        self.setup_admin("POST", base + "/attachments", {"kind": "user", "name": self.USER,
                                                         "policy": self.POLICY, "attach": True})
        # The sub-user can encrypt through every node before the run starts (the attachment is
        # acknowledged, so a linearizable Encrypt anywhere must see it): a setup that did not
        # take fails here, not as a vacuous run.
        for i in self.ctx.live_nodes():
            deadline = time.time() + 30
            while True:
                r = self.user_client(self.ctx.client(i)).call(
                    "Encrypt", {"KeyId": self.key, "Plaintext": b64(b"setup")}, write=False)
                if r.kind == "ok":
                    break
                if time.time() > deadline:
                    raise RuntimeError("the sub-user cannot encrypt through node %d after "
                                       "setup: %s %s" % (i, r.code, r.message))
                time.sleep(0.5)

    def user_client(self, root_client):
        """A client of the same node and clock as ``root_client``, signing as the sub-user."""
        return KmsClient(root_client.endpoint, root_client.region, self.secret_id,
                         self.secret_key, root_client.tls, timeout=root_client.timeout,
                         clock=root_client.clock)

    # ------------------------------------------------------------------ ops

    def next_op(self, rng):
        return "encrypt", {"key": self.key}

    def invoke(self, client, f, value):
        if f != "encrypt":
            raise ValueError(f)
        r = self.user_client(client).call(
            "Encrypt", {"KeyId": value["key"], "Plaintext": b64(b"policy")}, write=False)
        if r.kind == "ok":
            return "ok", None, None
        # A lost answer leaves unknown whether the node let the request through; any answer of
        # the node (AuthFailure.UnauthorizedOperation included) or a refused connection is a
        # definite fail.
        if r.code == "transport" or (r.code or "").startswith("http."):
            return "info", None, r.code
        return "fail", None, r.code

    def dedicated(self):
        return [("policy-admin", self.toggle_policy)]

    def toggle_policy(self, stop, rng):
        """The dedicated process: revoke, grant, revoke, ... every 0.5-1 s, each a PUT of the
        policy's document recorded as an op. After an unknown outcome the process retires and
        goes on under a new name (its op stays open)."""
        h = self.ctx.history
        path = "/admin/accounts/%d/policies/%s" % (self.uin, self.POLICY)
        generation = 0
        f = "revoke"
        while not stop.wait(rng.uniform(0.5, 1.0)):
            doc = self.REVOKE if f == "revoke" else self.GRANT
            body = {"name": self.POLICY, "document": doc}
            targets = self.admin_targets()
            inv = h.invoke("policy-admin-%d" % generation, f, {"policy": self.POLICY},
                           targets[0] if targets else None)
            try:
                kind, result, error = self.admin_write("PUT", path, body, targets)
            except Exception as e:  # a harness bug must not hide as a pass: record and re-raise
                h.complete(inv, "info", error="harness: %r" % e)
                raise
            h.complete(inv, kind, result, error)
            if kind == "info":
                generation += 1
            f = "grant" if f == "revoke" else "revoke"

    def check(self, ops):
        return {"policy-revocation": checkers.check_policy_revocation(ops)}


WORKLOADS = {w.name: w for w in (KeySet, Register, StaleMinority, LeaseRegister, Dialects, Crypto, Deletion,
                                  Policy)}
