#!/usr/bin/env python3
"""Drives a compose cluster through the KMS API for docker/test.sh, one phase per call.

    container_check.py STATE.json PHASE [--via N,N] [--cut N,N]

Cluster coordinates come from the environment (docker/up.sh's env file): KMS_SECRET_ID,
KMS_SECRET_KEY, KMS_REGION, KMS_CA_BUNDLE (the API's CA), RAFTKMS_CLUSTER_ID, RAFTKMS_CA,
RAFTKMS_ADMIN_CERT, RAFTKMS_ADMIN_KEY (mutual TLS on the internal listener), RAFTKMS_PORT_PREFIX
(node N: API on 127.0.0.1:<prefix>0N, internal listener on <prefix>1N). STATE.json carries the keys
and ciphertexts acknowledged so far from one phase to the next: every phase checks that all of them
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
  tls       through the nodes in --via: the internal listener serves admin routes to the admin
            certificate, refuses a node certificate there (401) and a connection without a client
            certificate; the API does not answer plaintext HTTP
Normal calls go through the unmodified Tencent Cloud SDK (KmsClient); stale calls, which need a
request header the SDK cannot read back, are signed here with TC3-HMAC-SHA256.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import ssl
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


def opener(context):
    """urllib without proxies (they would take 127.0.0.1 traffic too), with this TLS context."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=context))


def api_opener():
    # The nodes' certificates name 127.0.0.1, so the usual host name check applies.
    return opener(ssl.create_default_context(cafile=env("KMS_CA_BUNDLE")))


def internal_opener(cert=None, key=None):
    """Mutual TLS to the internal listener: the cluster CA, and the client certificate if given.
    Nodes are identified by the identity in their certificates, not by the address dialled, so the
    host name is not checked (the chain is)."""
    ctx = ssl.create_default_context(cafile=env("RAFTKMS_CA"))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert, key)
    return opener(ctx)


def client(n, timeout=20):
    cred = credential.Credential(env("KMS_SECRET_ID"), env("KMS_SECRET_KEY"))
    # The SDK takes the CA file only here (it ignores REQUESTS_CA_BUNDLE).
    http = HttpProfile(protocol="https", endpoint=api_addr(n), reqTimeout=timeout,
                       certification=env("KMS_CA_BUNDLE"))
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
    req = urllib.request.Request("https://%s/" % host, data=body, headers=h, method="POST")
    try:
        with api_opener().open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read())["Response"]
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read())["Response"]


def admin_get(n, path, timeout=5, cert=None, key=None):
    """GET an admin route of node n with the admin certificate (or the one given)."""
    req = urllib.request.Request("https://%s%s" % (internal_addr(n), path), headers={
        "X-Raftkms-Cluster": env("RAFTKMS_CLUSTER_ID"),
    })
    opened = internal_opener(cert or env("RAFTKMS_ADMIN_CERT"), key or env("RAFTKMS_ADMIN_KEY"))
    with opened.open(req, timeout=timeout) as resp:
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


def phase_tls(_state, via, _cut):
    notes = []
    tls_dir = os.path.dirname(env("RAFTKMS_CA"))
    for n in via:
        seen = []
        admin_get(n, "/admin/status")
        seen.append("admin certificate served on /admin/status")
        # A node certificate authenticates a peer, not an admin.
        node_cert, node_key = (os.path.join(tls_dir, "node%d.%s" % (n, ext)) for ext in ("pem", "key"))
        if not os.access(node_key, os.R_OK):
            seen.append("node certificate not tried (%s belongs to the containers' user)" % node_key)
        else:
            try:
                admin_get(n, "/admin/status", cert=node_cert, key=node_key)
                raise CheckFailed("node%d accepted a node certificate on /admin/status" % n)
            except urllib.error.HTTPError as e:
                if e.code != 401:
                    raise CheckFailed("node%d answered %d to a node certificate on /admin/status, not 401"
                                      % (n, e.code))
            seen.append("node certificate refused there (401)")
        # No client certificate: the handshake (or, under TLS 1.3, the first read after it) fails;
        # no HTTP answer at all may come back.
        req = urllib.request.Request("https://%s/admin/status" % internal_addr(n),
                                     headers={"X-Raftkms-Cluster": env("RAFTKMS_CLUSTER_ID")})
        try:
            with internal_opener().open(req, timeout=5) as resp:
                raise CheckFailed("node%d answered %d without a client certificate" % (n, resp.status))
        except urllib.error.HTTPError as e:
            raise CheckFailed("node%d answered %d without a client certificate, instead of ending the "
                              "handshake" % (n, e.code))
        except (urllib.error.URLError, ssl.SSLError, ConnectionError, http.client.HTTPException) as e:
            cause = getattr(e, "reason", e)  # urllib wraps what the handshake raised
            seen.append("no certificate refused (%s)" % (getattr(cause, "reason", None) or cause))
        # The API speaks only TLS.
        plain = urllib.request.Request("http://%s/readyz" % api_addr(n))
        try:
            with opener(None).open(plain, timeout=5) as resp:
                raise CheckFailed("node%d answered plaintext HTTP on its API port (%d)" % (n, resp.status))
        except urllib.error.HTTPError as e:
            raise CheckFailed("node%d answered plaintext HTTP on its API port (%d)" % (n, e.code))
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException) as e:
            seen.append("API: no answer to plaintext HTTP (%s)" % type(e).__name__)
        notes.append("node%d: %s" % (n, "; ".join(seen)))
    return "\n".join(notes)


PHASES = {"setup": phase_setup, "writes": phase_writes, "cut": phase_cut, "converge": phase_converge,
          "tls": phase_tls}


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
