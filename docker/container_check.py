#!/usr/bin/env python3
"""Drives a compose cluster through the KMS API for docker/test.sh, one phase per call.

    container_check.py STATE.json PHASE [--via N,N] [--cut N,N]

Cluster coordinates come from the environment (docker/up.sh's env file): KMS_SECRET_ID,
KMS_SECRET_KEY, KMS_REGION, RAFTKMS_CLUSTER_ID, RAFTKMS_CLUSTER_SECRET, RAFTKMS_PORT_PREFIX (node N:
API on 127.0.0.1:<prefix>0N, internal listener on <prefix>1N). STATE.json carries the keys and
ciphertexts acknowledged so far from one phase to the next: every phase checks that all of them
still decrypt to their plaintext, so nothing acknowledged may ever be lost.

Phases:
  setup     create keys and ciphertexts through every node (--via)
  writes    through the nodes in --via: new keys and ciphertexts are acknowledged, and every
            recorded ciphertext decrypts (linearizable)
  cut       through the nodes in --cut (cut off from the quorum): stale Encrypt/Decrypt work and
            report the lag headers; CreateKey and linearizable Decrypt fail within a bound with
            UnsupportedOperation.ServiceTemporaryUnavailable (or the write-timeout InternalError)
  converge  every node in --via reports the same /admin/digest (waits up to 90 s), then every
            recorded ciphertext decrypts through every node
Normal calls go through the unmodified Tencent Cloud SDK (KmsClient); stale calls, which need a
request header the SDK cannot read back, are signed here with TC3-HMAC-SHA256.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client, models

# A refused write or linearizable read in a minority must come back within this bound (the node's
# write timeout is 5 s, its read timeout 3 s); longer counts as hanging.
FAIL_FAST_BOUND_S = 15.0
MINORITY_CODES = {
    "UnsupportedOperation.ServiceTemporaryUnavailable",
    "InternalError",  # a write that did not commit within write-timeout-ms says so with this code
}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CheckFailed(Exception):
    pass


def env(name):
    value = os.environ.get(name)
    if not value:
        raise CheckFailed("%s is not set (source the env file docker/up.sh wrote)" % name)
    return value


def api_addr(n):
    return "127.0.0.1:%s0%d" % (env("RAFTKMS_PORT_PREFIX"), n)


def internal_addr(n):
    return "127.0.0.1:%s1%d" % (env("RAFTKMS_PORT_PREFIX"), n)


def client(n, timeout=20):
    cred = credential.Credential(env("KMS_SECRET_ID"), env("KMS_SECRET_KEY"))
    http = HttpProfile(protocol="http", endpoint=api_addr(n), reqTimeout=timeout)
    return kms_client.KmsClient(cred, env("KMS_REGION"), ClientProfile(httpProfile=http))


# While a new leader is elected (a node stopped, a region cut off) calls are refused with these
# codes; `call` retries them for up to RETRY_FOR_S. Only acknowledged results are recorded.
RETRYABLE = {"UnsupportedOperation.ServiceTemporaryUnavailable", "InternalError", "ClientNetworkError"}
RETRY_FOR_S = 45.0


def call(n, action, timeout=20, **fields):
    req = getattr(models, action + "Request")()
    for k, v in fields.items():
        setattr(req, k, v)
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            return getattr(client(n, timeout), action)(req)
        except TencentCloudSDKException as e:
            if e.get_code() not in RETRYABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def b64(data):
    return base64.b64encode(data).decode("ascii")


# --- hand-signed requests (stale reads) ------------------------------------------------------------

def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def raw_call(n, action, params, headers=None, timeout=20):
    """POST one TC3-signed request to node n; returns (http status, response headers, envelope)."""
    host = api_addr(n)
    body = json.dumps(params).encode("utf-8")
    ts = int(time.time())
    date = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d")
    scope = "%s/kms/tc3_request" % date
    canonical = "\n".join(["POST", "/", "", "content-type:application/json\nhost:%s\n" % host,
                           "content-type;host", hashlib.sha256(body).hexdigest()])
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(ts), scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    k = _hmac(("TC3" + env("KMS_SECRET_KEY")).encode("utf-8"), date)
    k = _hmac(_hmac(k, "kms"), "tc3_request")
    sig = hmac.new(k, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    h = {
        "Host": host,
        "Content-Type": "application/json",
        "X-TC-Action": action,
        "X-TC-Version": "2019-01-18",
        "X-TC-Timestamp": str(ts),
        "X-TC-Region": env("KMS_REGION"),
        "Authorization": "TC3-HMAC-SHA256 Credential=%s/%s, SignedHeaders=content-type;host, Signature=%s"
                         % (env("KMS_SECRET_ID"), scope, sig),
    }
    h.update(headers or {})
    req = urllib.request.Request("http://%s/" % host, data=body, headers=h, method="POST")
    try:
        with NO_PROXY.open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read())["Response"]
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read())["Response"]


def admin_get(n, path, timeout=5):
    req = urllib.request.Request("http://%s%s" % (internal_addr(n), path), headers={
        "Authorization": "Bearer " + env("RAFTKMS_CLUSTER_SECRET"),
        "X-Raftkms-Cluster": env("RAFTKMS_CLUSTER_ID"),
    })
    with NO_PROXY.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


# --- state -----------------------------------------------------------------------------------------

def load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"keys": [], "sealed": []}


def save(path, state):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def new_key_and_ciphertexts(state, n, tag):
    """CreateKey and two Encrypts through node n; recorded only once acknowledged."""
    key_id = call(n, "CreateKey", Alias="ctest-%s-%s" % (tag, uuid.uuid4().hex[:12]),
                  Description="docker/test.sh %s via node%d" % (tag, n)).KeyId
    state["keys"].append(key_id)
    for i in range(2):
        plain = os.urandom(24)
        blob = call(n, "Encrypt", KeyId=key_id, Plaintext=b64(plain)).CiphertextBlob
        state["sealed"].append({"key": key_id, "plain": b64(plain), "blob": blob, "via": n})


def check_all_decrypt(state, nodes):
    for s in state["sealed"]:
        for n in nodes:
            r = call(n, "Decrypt", CiphertextBlob=s["blob"])
            if r.Plaintext != s["plain"] or r.KeyId != s["key"]:
                raise CheckFailed("ciphertext made via node%d decrypts wrongly via node%d" % (s["via"], n))


# --- phases ----------------------------------------------------------------------------------------

def phase_setup(state, via, _cut):
    for n in via:
        new_key_and_ciphertexts(state, n, "setup")
    check_all_decrypt(state, via)
    return "%d keys and %d ciphertexts acknowledged through nodes %s" % (
        len(state["keys"]), len(state["sealed"]), ",".join(map(str, via)))


def phase_writes(state, via, _cut):
    before = len(state["sealed"])
    for n in via:
        new_key_and_ciphertexts(state, n, "write")
    check_all_decrypt(state, via)
    return "new keys and ciphertexts acknowledged through nodes %s; all %d ciphertexts (%d older) decrypt" % (
        ",".join(map(str, via)), len(state["sealed"]), before)


def phase_cut(state, _via, cut):
    notes = []
    stale = {"X-Raftkms-Consistency": "stale"}
    for n in cut:
        # Stale Decrypt of every recorded ciphertext, and a stale Encrypt with an existing key.
        for s in state["sealed"]:
            status, headers, env_ = raw_call(n, "Decrypt", {"CiphertextBlob": s["blob"]}, stale)
            if "Error" in env_:
                raise CheckFailed("stale Decrypt via cut-off node%d failed: %s" % (n, env_["Error"]))
            if env_.get("Plaintext") != s["plain"]:
                raise CheckFailed("stale Decrypt via cut-off node%d returned the wrong plaintext" % n)
            for h in ("x-raftkms-applied-index", "x-raftkms-commit-index"):
                if not headers.get(h, "").isdigit():
                    raise CheckFailed("stale answer of node%d lacks header %s: %s" % (n, h, headers))
        key = state["sealed"][0]["key"]
        status, headers, env_ = raw_call(n, "Encrypt", {"KeyId": key, "Plaintext": b64(b"stale")}, stale)
        if "Error" in env_:
            raise CheckFailed("stale Encrypt via cut-off node%d failed: %s" % (n, env_["Error"]))
        status, _h, back = raw_call(n, "Decrypt", {"CiphertextBlob": env_["CiphertextBlob"]}, stale)
        if back.get("Plaintext") != b64(b"stale"):
            raise CheckFailed("stale Encrypt/Decrypt round trip via node%d failed: %s" % (n, back))
        lag = headers.get("x-raftkms-leader-contact-ms", "none (never heard from a leader)")
        notes.append("node%d: stale Decrypt x%d + Encrypt ok (applied index %s, commit index %s, last leader contact %s ms ago)"
                     % (n, len(state["sealed"]), headers.get("x-raftkms-applied-index"),
                        headers.get("x-raftkms-commit-index"), lag))
        # A write and a linearizable read must fail, and fail within the bound.
        for action, params in (("CreateKey", {"Alias": "ctest-minority-" + uuid.uuid4().hex[:12]}),
                               ("Decrypt", {"CiphertextBlob": state["sealed"][0]["blob"]})):
            t0 = time.monotonic()
            try:
                status, _h, env_ = raw_call(n, action, params, timeout=FAIL_FAST_BOUND_S)
            except (TimeoutError, OSError) as e:
                raise CheckFailed("%s via cut-off node%d did not answer within %.0f s (%s)"
                                  % (action, n, FAIL_FAST_BOUND_S, e))
            took = time.monotonic() - t0
            code = (env_.get("Error") or {}).get("Code")
            if code not in MINORITY_CODES:
                raise CheckFailed("%s via cut-off node%d should fail with %s, got %s"
                                  % (action, n, " or ".join(sorted(MINORITY_CODES)), env_))
            notes.append("node%d: %s refused with %s after %.1f s" % (n, action, code, took))
    return "\n".join(notes)


def phase_converge(state, via, _cut):
    deadline = time.monotonic() + 90
    last = None
    while True:
        digests = {}
        for n in via:
            try:
                d = admin_get(n, "/admin/digest")
                digests[n] = (d.get("applied_index"), d.get("digest"))
            except (OSError, ValueError) as e:
                digests[n] = ("unreachable", str(e))
        if len(set(digests.values())) == 1 and None not in next(iter(digests.values())):
            break
        last = digests
        if time.monotonic() > deadline:
            raise CheckFailed("nodes did not converge within 90 s: %s" % last)
        time.sleep(0.5)
    check_all_decrypt(state, via)
    index, digest = next(iter(digests.values()))
    return "nodes %s agree: applied index %s, digest %s; all %d ciphertexts decrypt through every node" % (
        ",".join(map(str, via)), index, str(digest)[:16], len(state["sealed"]))


PHASES = {"setup": phase_setup, "writes": phase_writes, "cut": phase_cut, "converge": phase_converge}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("state")
    p.add_argument("phase", choices=sorted(PHASES))
    p.add_argument("--via", default="", help="comma-separated node ids to drive")
    p.add_argument("--cut", default="", help="comma-separated node ids cut off from the quorum")
    a = p.parse_args()
    ids = lambda s: [int(x) for x in s.split(",") if x]
    state = load(a.state)
    try:
        summary = PHASES[a.phase](state, ids(a.via), ids(a.cut))
    except TencentCloudSDKException as e:
        print("container_check %s: FAILED: %s %s (request %s)" % (a.phase, e.get_code(), e.get_message(),
                                                               e.get_request_id()), file=sys.stderr)
        return 1
    except CheckFailed as e:
        print("container_check %s: FAILED: %s" % (a.phase, e), file=sys.stderr)
        return 1
    finally:
        save(a.state, state)
    for line in summary.splitlines():
        print("      " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
