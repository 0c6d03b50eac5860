#!/usr/bin/env python3
"""The client side of tests/upgrade/run.sh: a mixed read/write load through every node while the
cluster is upgraded node by node, then the check that nothing acknowledged was lost.

    load.py run --out FILE --stop FILE     runs until FILE named by --stop exists (at most
                                            --max-seconds), one client per node, and writes what
                                            was acknowledged and every request that failed after
                                            the client's retries
    load.py check --recorded FILE           every acknowledged key is Enabled and every
                                            acknowledged ciphertext decrypts to its plaintext,
                                            asked of every node
    load.py bind --expect CODE|ok           BindCloudResource, a hosted GenerateDataKey and a
                                            post-quantum CreateKey (feature level 2) through
                                            every node answer CODE (or succeed: the bound key
                                            cannot be disabled, the data key reads back)

Endpoints, credential and CA come from dev.env's KMS_* variables in the environment. The
client's retries: a request that fails for a reason retrying can fix (the node is down or
restarting, no leader yet, a write of unknown outcome) is sent again, to the next node, for up
to --retry-seconds; one that still fails is counted as failed. A retried CreateKey may create a
second key; only keys whose creation was acknowledged are checked.
"""

import argparse
import base64
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "jepsen"))
from rkj.client import KmsClient, tls_context  # noqa: E402

# Answers a client retries: the request did not reach a serving node, or its outcome is unknown.
RETRYABLE = {"transport", "transport.refused", "InternalError",
             "UnsupportedOperation.ServiceTemporaryUnavailable", "RequestLimitExceeded"}


def clients():
    endpoints = [e.split("://", 1)[-1].rstrip("/")
                 for e in os.environ["KMS_ENDPOINTS"].split(",") if e]
    tls = tls_context(os.environ["KMS_CA_BUNDLE"])
    return [KmsClient(e, os.environ["KMS_REGION"], os.environ["KMS_SECRET_ID"],
                      os.environ["KMS_SECRET_KEY"], tls, timeout=3.0) for e in endpoints]


class Retrying:
    """Sends each request to one node after the other until it is answered or the retry budget
    is spent; counts the retries."""

    def __init__(self, cs, retry_seconds):
        self.cs = cs
        self.retry_seconds = retry_seconds
        self.next = 0
        self.retries = 0

    def call(self, action, params, write):
        """``params``: the parameters, or a function of the attempt number that makes them (a
        retried CreateKey needs a new alias: aliases are unique, and the first attempt may have
        created its key)."""
        deadline = time.monotonic() + self.retry_seconds
        last = None
        attempt = 0
        while True:
            c = self.cs[self.next % len(self.cs)]
            r = c.call(action, params(attempt) if callable(params) else params, write=write)
            attempt += 1
            if r.kind == "ok" or r.code not in RETRYABLE:
                return r
            last = r
            self.retries += 1
            self.next += 1
            if time.monotonic() > deadline:
                return last
            time.sleep(0.1)


def run(args):
    cs = clients()
    client = Retrying(cs, args.retry_seconds)
    keys, blobs, failures = [], [], []
    counts = {"CreateKey": 0, "Encrypt": 0, "Decrypt": 0, "DescribeKey": 0}
    started = time.monotonic()
    i = 0
    while not os.path.exists(args.stop) and time.monotonic() - started < args.max_seconds:
        i += 1
        client.next = i  # spread requests over the nodes
        if i % 5 == 1 or not keys:
            action = "CreateKey"
            r = client.call("CreateKey", lambda a, i=i: {"Alias": "upgrade-%d-%d-%d" % (
                os.getpid(), i, a)}, write=True)
            if r.kind == "ok":
                keys.append(r.fields["KeyId"])
        elif i % 5 == 2:
            action = "Encrypt"
            key_id = keys[i % len(keys)]
            plain = base64.b64encode(os.urandom(18)).decode()
            r = client.call("Encrypt", {"KeyId": key_id, "Plaintext": plain}, write=False)
            if r.kind == "ok":
                blobs.append({"key_id": key_id, "plaintext": plain,
                              "blob": r.fields["CiphertextBlob"]})
        elif i % 5 == 3 and blobs:
            action = "Decrypt"
            b = blobs[i % len(blobs)]
            r = client.call("Decrypt", {"CiphertextBlob": b["blob"]}, write=False)
            if r.kind == "ok" and r.fields.get("Plaintext") != b["plaintext"]:
                failures.append({"action": "Decrypt", "code": "wrong plaintext", "at_s": 0})
        else:
            action = "DescribeKey"
            r = client.call("DescribeKey", {"KeyId": keys[i % len(keys)]}, write=False)
        counts[action] += 1
        if r.kind != "ok":
            failures.append({"action": action, "code": r.code, "message": (r.message or "")[:200],
                             "at_s": round(time.monotonic() - started, 1)})
    out = {"requests": sum(counts.values()), "by_action": counts, "retries": client.retries,
           "failed": failures, "keys": keys, "ciphertexts": blobs,
           "seconds": round(time.monotonic() - started, 1)}
    with open(args.out, "w") as f:
        json.dump(out, f)
    print("load: %d requests (%s) in %.0f s, %d retried sends, %d failed after retries; "
          "%d keys and %d ciphertexts acknowledged" % (
              out["requests"], ", ".join("%s %d" % kv for kv in counts.items()), out["seconds"],
              client.retries, len(failures), len(keys), len(blobs)))
    for f in failures[:10]:
        print("  failed: %s" % f)


def check(args):
    with open(args.recorded) as f:
        rec = json.load(f)
    lost = []
    for c in clients():
        for key_id in rec["keys"]:
            d = c.call("DescribeKey", {"KeyId": key_id}, write=False)
            if d.kind != "ok" or d.fields["KeyMetadata"]["KeyState"] != "Enabled":
                lost.append("%s: key %s: %s" % (c.endpoint, key_id, d.code or d.fields))
        for b in rec["ciphertexts"]:
            p = c.call("Decrypt", {"CiphertextBlob": b["blob"]}, write=False)
            if p.kind != "ok" or p.fields.get("Plaintext") != b["plaintext"]:
                lost.append("%s: ciphertext under %s: %s" % (
                    c.endpoint, b["key_id"], p.code or "wrong plaintext"))
    n = len(clients())
    print("checked %d acknowledged keys and %d acknowledged ciphertexts on each of %d nodes: "
          "%d lost" % (len(rec["keys"]), len(rec["ciphertexts"]), n, len(lost)))
    for line in lost[:20]:
        print("  LOST " + line)
    if lost or not rec["keys"] or not rec["ciphertexts"]:
        sys.exit(1)


def bind(args):
    """BindCloudResource (feature level 2) on a new key through every node: each answer must be
    --expect (``ok`` or an error code)."""
    for c in clients():
        r = c.call("CreateKey", {"Alias": "upgrade-bind-%d" % os.getpid() + c.endpoint[-1]},
                   write=True)
        if r.kind != "ok":
            raise SystemExit("CreateKey through %s: %s %s" % (c.endpoint, r.code, r.message))
        key_id = r.fields["KeyId"]
        b = c.call("BindCloudResource", {"KeyId": key_id, "ProductId": "cvm",
                                         "ResourceId": "ins-upgrade"}, write=True)
        got = "ok" if b.kind == "ok" else b.code
        print("BindCloudResource through %s: %s%s" % (
            c.endpoint, got, "" if b.kind == "ok" else " (%s)" % (b.message or "")[:160]))
        if got != args.expect:
            raise SystemExit("expected %s" % args.expect)
        if got == "ok":
            d = c.call("DisableKey", {"KeyId": key_id}, write=True)
            if d.code != "FailedOperation.CmkUsedByCloudProduct":
                raise SystemExit("DisableKey of a bound key through %s: %s" % (c.endpoint, d.code))
        # A hosted data key (also level 2): refused, or kept and read back.
        g = c.call("GenerateDataKey", {"KeyId": key_id, "KeySpec": "AES_256", "IsHostedByKms": 1,
                                       "DataKeyName": "upgrade-%d-%s" % (os.getpid(),
                                                                         c.endpoint[-1])},
                   write=True)
        got = "ok" if g.kind == "ok" else g.code
        print("GenerateDataKey (hosted) through %s: %s" % (c.endpoint, got))
        if got != args.expect:
            raise SystemExit("expected %s" % args.expect)
        if got == "ok":
            p = c.call("GetDataKeyPlaintext", {"DataKeyId": g.fields["DataKeyId"]}, write=False)
            if p.kind != "ok" or p.fields.get("Plaintext") != g.fields.get("Plaintext"):
                raise SystemExit("GetDataKeyPlaintext through %s: %s" % (c.endpoint, p.code))
        # A post-quantum key (a key usage of level 2): refused, or made and usable.
        q = c.call("CreateKey", {"Alias": "upgrade-pq-%d" % os.getpid() + c.endpoint[-1],
                                 "KeyUsage": "ASYMMETRIC_SIGN_VERIFY_DILITHIUM"}, write=True)
        got = "ok" if q.kind == "ok" else q.code
        print("CreateKey (ML-DSA) through %s: %s" % (c.endpoint, got))
        if got != args.expect:
            raise SystemExit("expected %s" % args.expect)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--stop", required=True)
    r.add_argument("--max-seconds", type=float, default=600)
    r.add_argument("--retry-seconds", type=float, default=10)
    c = sub.add_parser("check")
    c.add_argument("--recorded", required=True)
    b = sub.add_parser("bind")
    b.add_argument("--expect", required=True)
    args = p.parse_args()
    {"run": run, "check": check, "bind": bind}[args.cmd](args)


if __name__ == "__main__":
    main()
