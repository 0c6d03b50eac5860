#!/usr/bin/env python3
"""The KMS side of benches/restore-drill.sh: records keys and ciphertexts acknowledged by the
source cluster, and later checks them on the restored cluster.

    restore_drill.py record --keys N --out FILE     (endpoint, credential and CA from dev.env's
                                                     KMS_* variables in the environment)
    restore_drill.py verify --recorded FILE --endpoint HOST:PORT --ca CA --timeout S
                            [--admin-cert C --admin-key K --admin-addr HOST:PORT --cluster-id ID
                             --digest D]

`verify` retries the first call until the restored node answers (it has just been started) and
reports how long that took; then every recorded key must be Enabled and every ciphertext must
decrypt to its plaintext through the restored node, and (with --digest) the node's state digest
must be the one `raftkms restore` printed. Exit status 1 on any loss.
"""

import argparse
import base64
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "jepsen"))
from rkj.client import AdminClient, KmsClient, tls_context  # noqa: E402


def endpoint_of(url):
    return url.split("://", 1)[-1].rstrip("/")


def record(args):
    endpoints = [endpoint_of(e) for e in os.environ["KMS_ENDPOINTS"].split(",") if e]
    tls = tls_context(os.environ["KMS_CA_BUNDLE"])
    clients = [KmsClient(e, os.environ["KMS_REGION"], os.environ["KMS_SECRET_ID"],
                         os.environ["KMS_SECRET_KEY"], tls) for e in endpoints]
    out = []
    for i in range(args.keys):
        c = clients[i % len(clients)]
        r = c.call("CreateKey", {"Alias": "restore-drill-%d" % i}, write=True)
        if r.kind != "ok":
            raise SystemExit("CreateKey %d: %s %s" % (i, r.code, r.message))
        key_id = r.fields["KeyId"]
        plain = base64.b64encode(os.urandom(24)).decode()
        e = c.call("Encrypt", {"KeyId": key_id, "Plaintext": plain}, write=False)
        if e.kind != "ok":
            raise SystemExit("Encrypt %d: %s %s" % (i, e.code, e.message))
        out.append({"key_id": key_id, "plaintext": plain, "blob": e.fields["CiphertextBlob"]})
    with open(args.out, "w") as f:
        json.dump(out, f)
    print("recorded %d keys and %d ciphertexts" % (len(out), len(out)))


def verify(args):
    with open(args.recorded) as f:
        recorded = json.load(f)
    c = KmsClient(args.endpoint, os.environ["KMS_REGION"], os.environ["KMS_SECRET_ID"],
                  os.environ["KMS_SECRET_KEY"], tls_context(args.ca))
    started = time.monotonic()
    deadline = started + args.timeout
    while True:
        r = c.call("DescribeKey", {"KeyId": recorded[0]["key_id"]}, write=False)
        if r.kind == "ok":
            break
        if time.monotonic() > deadline:
            raise SystemExit("the restored node did not answer within %d s: %s %s" % (
                args.timeout, r.code, r.message))
        time.sleep(0.05)
    serving_ms = int((time.monotonic() - started) * 1000)
    lost = []
    for item in recorded:
        d = c.call("DescribeKey", {"KeyId": item["key_id"]}, write=False)
        if d.kind != "ok" or d.fields["KeyMetadata"]["KeyState"] != "Enabled":
            lost.append("key %s: %s" % (item["key_id"], d.code or d.fields))
            continue
        p = c.call("Decrypt", {"CiphertextBlob": item["blob"]}, write=False)
        if p.kind != "ok" or p.fields.get("Plaintext") != item["plaintext"]:
            lost.append("ciphertext under %s: %s" % (item["key_id"], p.code or "wrong plaintext"))
    digest_ok = None
    if args.digest:
        admin = AdminClient(args.admin_addr, args.cluster_id,
                            tls_context(args.ca, args.admin_cert, args.admin_key))
        got = admin.digest()["digest"]
        digest_ok = got == args.digest
        if not digest_ok:
            lost.append("state digest %s, restore said %s" % (got, args.digest))
    print("restored node answering %d ms after it was started; verified %d keys and %d "
          "ciphertexts%s; lost %d" % (
              serving_ms, len(recorded), len(recorded),
              "; state digest equal to the restored backup's" if digest_ok else "", len(lost)))
    for line in lost[:20]:
        print("  LOST " + line)
    sys.exit(1 if lost else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--keys", type=int, required=True)
    r.add_argument("--out", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--recorded", required=True)
    v.add_argument("--endpoint", required=True)
    v.add_argument("--ca", required=True)
    v.add_argument("--timeout", type=int, default=60)
    v.add_argument("--admin-addr")
    v.add_argument("--admin-cert")
    v.add_argument("--admin-key")
    v.add_argument("--cluster-id")
    v.add_argument("--digest")
    args = ap.parse_args()
    record(args) if args.cmd == "record" else verify(args)


if __name__ == "__main__":
    main()
