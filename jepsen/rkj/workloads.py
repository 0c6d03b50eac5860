"""Workloads: what the clients do, how a reply becomes a completion, and the final reads.

Every op is one real API call through one node, recorded as an invocation and a completion. No
write is ever retried (the TiDB lesson): an unknown outcome is ``info`` and the process retires.
"""

import base64
import os
import random
import struct
import threading
import time
import uuid

from . import checkers

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

    def check(self, ops):
        raise NotImplementedError

    def setup_call(self, action, params):
        """A setup call (not part of the history), retried until the cluster takes it."""
        return self.ctx.setup_call(action, params)


# ---------------------------------------------------------------------- key-set


class KeySet(Workload):
    """CreateKey adds an element (its alias); ListKeyDetail reads the whole set."""

    name = "key-set"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.counter = 0
        self.prefix = "js%s" % uuid.uuid4().hex[:6]

    def next_op(self, rng):
        if rng.random() < 0.06:
            return "list", None
        with self.lock:
            self.counter += 1
            n = self.counter
        return "create", {"alias": "%s-%d" % (self.prefix, n)}

    def list_all(self, client):
        aliases = []
        offset = 0
        while True:
            r = client.call("ListKeyDetail", {"Offset": offset, "Limit": 200, "OrderType": 1,
                                                "SearchKeyAlias": self.prefix},
                            write=False, timeout=8)
            if r.kind != "ok":
                return r, None
            metas = r.fields.get("KeyMetadatas") or []
            aliases += [m.get("Alias") for m in metas]
            if len(metas) < 200:
                return r, aliases
            offset += 200
            if offset > 100_000:
                return r, aliases

    def invoke(self, client, f, value):
        if f == "create":
            r = client.call("CreateKey", {"Alias": value["alias"], "Description": "jepsen"},
                            write=True)
            if r.kind == "ok":
                return "ok", {"key_id": r.fields.get("KeyId")}, None
            return r.kind, None, r.code
        r, aliases = self.list_all(client)
        if aliases is None:
            return "fail", None, r.code
        return "ok", {"aliases": [a for a in aliases if a and a.startswith(self.prefix)]}, None

    def final(self):
        for i in self.ctx.live_nodes():
            self.ctx.final_op(i, "final-list", None, lambda c: self.invoke(c, "list", None))

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


# ---------------------------------------------------------------------- crypto


class Crypto(Workload):
    """Rotation and ciphertext durability: Encrypt (the blob names the material version),
    Decrypt of earlier blobs, RotateKey. Final: every acknowledged blob decrypts to its
    plaintext on every node, and every node encrypts under the same newest version."""

    name = "crypto"

    def __init__(self, ctx, keys=3):
        super().__init__(ctx)
        self.nkeys = keys
        self.keys = []
        self.blobs = []  # (key, blob, plaintext b64) of acknowledged encrypts

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
        raise ValueError(f)

    def final(self):
        with self.lock:
            blobs = list(self.blobs)
        # Bounded: at most 400 blobs (newest and oldest first) on every node.
        if len(blobs) > 400:
            blobs = blobs[:100] + self.rng.sample(blobs[100:-100], 200) + blobs[-100:]
        for i in self.ctx.live_nodes():
            for k in self.keys:
                v = {"key": k, "pt": b64(b"final")}
                self.ctx.final_op(i, "final-encrypt", v,
                                  lambda c, v=v: self.invoke(c, "encrypt", v))
            for k, blob, pt in blobs:
                v = {"key": k, "blob": blob, "pt": pt}
                self.ctx.final_op(i, "final-decrypt", v,
                                  lambda c, v=v: self.invoke(c, "decrypt", v))

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


WORKLOADS = {w.name: w for w in (KeySet, Register, StaleMinority, Crypto, Deletion)}
