"""A minimal Tencent Cloud API 3.0 client (TC3-HMAC-SHA256) and the admin-endpoint client.

Both speak TLS, as a deployment does: the API over HTTPS trusting the cluster CA, the admin
endpoints of the internal listener over mutual TLS with an admin certificate (the cluster makes
both per run, see cluster.py). A TLS failure is a transport failure like any other OSError
(``ssl.SSLError`` is one), so it is classified exactly as a reset or a timeout.

Results are classified the Jepsen way: ``ok`` (definitely happened), ``fail`` (definitely did not
happen) and ``info`` (unknown: timeouts, resets, 5xx, and the server's own "may or may not have
been applied" answers).
"""

import datetime
import hashlib
import hmac
import http.client
import json
import ssl
import threading
import time

SERVICE = "kms"
VERSION = "2019-01-18"

# Answers that leave a write's effect unknown: the server says so (InternalError on a write
# timeout, ServiceTemporaryUnavailable after a leader change) or nothing reliable came back.
INDETERMINATE_CODES = {
    "InternalError",
    "UnsupportedOperation.ServiceTemporaryUnavailable",
}


def tls_context(ca_file, cert_file=None, key_file=None):
    """A client context that trusts only the cluster CA (``ca_file``) and, given ``cert_file``
    and ``key_file``, presents that certificate (mutual TLS on the internal listener).

    The host name is checked too: every node certificate names the addresses the harness dials
    (cluster.py gives them as --host), so a client that reached the wrong node, or something
    else, fails the handshake instead of talking to it. One context is shared by every client of
    a run (an SSLContext may be used from several threads); building one per call would re-read
    the files on every operation."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=ca_file)
    if cert_file is not None:
        ctx.load_cert_chain(cert_file, key_file)
    ctx.set_alpn_protocols(["http/1.1"])  # what both raftkms listeners speak
    return ctx


def _connection(addr, tls, timeout):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPSConnection(host, int(port), timeout=timeout, context=tls)


# The answered calls of the op running on this thread (see ``capture_calls``).
_captured = threading.local()


def capture_calls():
    """From now on, every KMS API call made on this thread that a node answered (a response
    envelope with a ``RequestId``, success or Tencent error) is noted, until
    ``captured_calls``. The runner brackets each op with the two, so the history names the
    request ids of the op's calls and the node each was sent to (the audit checker looks them up
    in the nodes' trails). Calls without an answer (refused connection, timeout, reset, TLS
    failure, a body that is not an envelope) have no request id and are not noted."""
    _captured.calls = []


def captured_calls():
    """The calls noted since ``capture_calls`` on this thread, oldest first, and stops noting:
    dicts ``{"request_id", "endpoint", "action", "code", "mono_ns"}`` (``code`` None for a
    success; ``mono_ns`` is ``time.monotonic_ns()`` when the answer had been read)."""
    calls = getattr(_captured, "calls", None)
    _captured.calls = None
    return calls or []


def _note_call(request_id, endpoint, action, code):
    calls = getattr(_captured, "calls", None)
    if calls is not None and isinstance(request_id, str) and request_id:
        calls.append({"request_id": request_id, "endpoint": endpoint, "action": action,
                      "code": code, "mono_ns": time.monotonic_ns()})


class Reply:
    """One API answer: ``kind`` is ok / fail / info; ``code`` the Tencent error code if any;
    ``request_id`` the envelope's ``RequestId`` (None if no envelope came back)."""

    __slots__ = ("kind", "code", "message", "fields", "headers", "request_id")

    def __init__(self, kind, code=None, message=None, fields=None, headers=None,
                 request_id=None):
        self.kind = kind
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.headers = headers or {}
        self.request_id = request_id

    def __repr__(self):
        return "Reply(%s, %s)" % (self.kind, self.code)


def tc3_authorization(secret_id, secret_key, host, body, timestamp):
    """The Authorization header value for a POST of ``body`` (bytes) to ``host``."""
    date = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d")
    canonical_headers = "content-type:application/json\nhost:%s\n" % host
    signed_headers = "content-type;host"
    canonical_request = "POST\n/\n\n%s\n%s\n%s" % (
        canonical_headers, signed_headers, hashlib.sha256(body).hexdigest())
    scope = "%s/%s/tc3_request" % (date, SERVICE)
    string_to_sign = "TC3-HMAC-SHA256\n%d\n%s\n%s" % (
        timestamp, scope, hashlib.sha256(canonical_request.encode()).hexdigest())

    def mac(key, msg):
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    k = mac(mac(mac(("TC3" + secret_key).encode(), date), SERVICE), "tc3_request")
    signature = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return "TC3-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        secret_id, scope, signed_headers, signature)


class KmsClient:
    """Calls the KMS API of one node over HTTPS (``tls``: a context from ``tls_context`` that
    trusts the cluster CA); one short-lived connection per call (no hidden retries)."""

    def __init__(self, endpoint, region, secret_id, secret_key, tls, timeout=6.0, clock=None):
        self.clock = clock or time.time  # the signer's wall clock (X-TC-Timestamp)
        self.endpoint = endpoint  # "host:port"
        self.tls = tls
        self.region = region
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.timeout = timeout

    def call(self, action, params, write, stale=False, timeout=None):
        """Calls ``action``; ``write`` decides how errors are classified."""
        body = json.dumps(params, separators=(",", ":")).encode()
        ts = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "Host": self.endpoint,
            "X-TC-Action": action,
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(ts),
            "X-TC-Region": self.region,
            "Authorization": tc3_authorization(self.secret_id, self.secret_key, self.endpoint,
                                               body, ts),
        }
        if stale:
            headers["X-Raftkms-Consistency"] = "stale"
        conn = _connection(self.endpoint, self.tls, timeout or self.timeout)
        try:
            conn.request("POST", "/", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        except (OSError, http.client.HTTPException) as e:
            # Connection refused means the request never reached a server: definitely not done.
            # Anything later, a failed TLS handshake included (ssl.SSLError is an OSError), is
            # classified as before TLS: the harness cannot tell how far the request got.
            if isinstance(e, ConnectionRefusedError):
                return Reply("fail", "transport.refused", str(e))
            return Reply("info" if write else "fail", "transport", str(e))
        finally:
            conn.close()
        try:
            doc = json.loads(data)["Response"]
        except (ValueError, KeyError, TypeError):
            return Reply("info" if write else "fail", "http.%d" % status, data[:200].decode("utf-8", "replace"))
        if not isinstance(doc, dict):
            return Reply("info" if write else "fail", "http.%d" % status,
                         data[:200].decode("utf-8", "replace"))
        # Every answer, an error included, carries the RequestId the node's audit record has.
        request_id = doc.get("RequestId")
        err = doc.get("Error")
        if err:
            code = err.get("Code", "") if isinstance(err, dict) else str(err)
            _note_call(request_id, self.endpoint, action, code)
            kind = "info" if (write and code in INDETERMINATE_CODES) else "fail"
            return Reply(kind, code, err.get("Message", "") if isinstance(err, dict) else "",
                         headers=resp_headers, request_id=request_id)
        _note_call(request_id, self.endpoint, action, None)
        return Reply("ok", fields=doc, headers=resp_headers, request_id=request_id)


class AdminClient:
    """The internal listener's admin endpoints, over mutual TLS: ``tls`` is a context from
    ``tls_context`` with the run's admin certificate (the listener admits admin routes only to
    an admin certificate of the cluster; there is no token to send). The cluster id header is
    still sent, as the raftkms CLI does."""

    def __init__(self, addr, cluster_id, tls, timeout=5.0):
        self.addr = addr
        self.cluster_id = cluster_id
        self.tls = tls
        self.timeout = timeout

    def request(self, method, path, body=None, timeout=None):
        conn = _connection(self.addr, self.tls, timeout or self.timeout)
        headers = {"X-Raftkms-Cluster": self.cluster_id}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status >= 300:
                raise AdminError("%s %s -> %d %s" % (method, path, resp.status, raw[:300]),
                                 status=resp.status, leader=_leader_hint(raw))
            return json.loads(raw) if raw else None
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise AdminError("%s %s on %s: %s" % (method, path, self.addr, e)) from None
        finally:
            conn.close()

    def status(self, timeout=None):
        return self.request("GET", "/admin/status", timeout=timeout)

    def digest(self, timeout=None):
        return self.request("GET", "/admin/digest", timeout=timeout)


def _leader_hint(raw):
    """The leader's Raft address in a refusal (a membership change sent to a follower answers
    421 with it), or None."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc.get("leader") if isinstance(doc, dict) else None


class AdminError(Exception):
    """An admin call that failed: ``status`` is the HTTP status if the node answered (None for a
    transport failure), ``leader`` the leader's Raft address if the node named one."""

    def __init__(self, message, status=None, leader=None):
        super().__init__(message)
        self.status = status
        self.leader = leader


# ---------------------------------------------------------------------- the other two dialects

def _transport_reply(e, write):
    if isinstance(e, ConnectionRefusedError):
        return Reply("fail", "transport.refused", str(e))
    return Reply("info" if write else "fail", "transport", str(e))


# The API 3.0 action each legacy action and Huawei verb is authorized and audited as.
V2_AUDITED_AS = {"CreateKey": "CreateKey", "ListKey": "ListKeys", "GetKeyAttributes": "DescribeKey",
                 "SetKeyAttributes": "UpdateAlias", "EnableKey": "EnableKey", "DisableKey": "DisableKey",
                 "Encrypt": "Encrypt", "Decrypt": "Decrypt", "GenerateDataKey": "GenerateDataKey"}
HUAWEI_AUDITED_AS = {"create-key": "CreateKey", "describe-key": "DescribeKey", "enable-key": "EnableKey",
                     "disable-key": "DisableKey", "update-key-description": "UpdateKeyDescription",
                     "encrypt-data": "Encrypt", "decrypt-data": "Decrypt"}


class V2Client:
    """Tencent's legacy KMS API (``GET /v2/index.php``, HmacSHA256) on one node, with the same
    credential as the API 3.0 client. Codes come back as ``v2.<code>``; 6000 and 6200 leave a
    write's effect unknown."""

    INDETERMINATE = {"v2.6000", "v2.6200"}

    def __init__(self, base):
        self.base = base  # the node's KmsClient (endpoint, region, credential, TLS)

    def call(self, action, params, write, timeout=None):
        import base64
        import random
        import urllib.parse
        b = self.base
        p = dict(params)
        p.update({"Action": action, "Nonce": str(random.randint(1, 2 ** 62)),
                  "Timestamp": str(int(b.clock())), "SecretId": b.secret_id,
                  "Region": b.region, "SignatureMethod": "HmacSHA256"})
        signed = "&".join("%s=%s" % (k.replace("_", "."), p[k])
                          for k in sorted(p, key=lambda k: k.replace("_", ".")))
        msg = "GET%s/v2/index.php?%s" % (b.endpoint, signed)
        p["Signature"] = base64.b64encode(
            hmac.new(b.secret_key.encode(), msg.encode(), hashlib.sha256).digest()).decode()
        conn = _connection(b.endpoint, b.tls, timeout or b.timeout)
        try:
            conn.request("GET", "/v2/index.php?" + urllib.parse.urlencode(p))
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            return _transport_reply(e, write)
        finally:
            conn.close()
        try:
            doc = json.loads(data)
            code = int(doc["code"])
        except (ValueError, KeyError, TypeError):
            return Reply("info" if write else "fail", "http.%d" % resp.status, data[:200].decode("utf-8", "replace"))
        request_id = doc.get("requestId")
        audited = V2_AUDITED_AS.get(action, action)
        if code != 0:
            c = "v2.%d" % code
            # The node's audit record holds the codeDesc the answer carries.
            _note_call(request_id, b.endpoint, audited, doc.get("codeDesc"))
            kind = "info" if (write and c in self.INDETERMINATE) else "fail"
            return Reply(kind, c, doc.get("message", ""), request_id=request_id)
        _note_call(request_id, b.endpoint, audited, None)
        return Reply("ok", fields=doc, request_id=request_id)


def huawei_project_id(uin, region):
    """The account's Huawei project id in ``region`` (src/http/huawei/project.rs)."""
    h = hashlib.sha256(b"raftkms huawei project id v1\0" + str(uin).encode() + b"\0" + region.encode())
    return h.hexdigest()[:32]


class HuaweiClient:
    """The Huawei Cloud KMS API (``POST /v1.0/{project}/kms/<verb>``, SDK-HMAC-SHA256) on one
    node. Codes are Huawei's (``KMS.0209``); HTTP 5xx leaves a write's effect unknown."""

    def __init__(self, base, uin):
        self.base = base
        self.project = huawei_project_id(uin, base.region)

    def call(self, verb, body, write, timeout=None):
        b = self.base
        path = "/v1.0/%s/kms/%s" % (self.project, verb)
        data = json.dumps(body).encode()
        date = datetime.datetime.fromtimestamp(int(b.clock()), datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        headers = {"content-type": "application/json;charset=utf-8", "host": b.endpoint,
                   "x-project-id": self.project, "x-sdk-date": date}
        names = sorted(headers)
        canonical = "POST\n%s/\n\n%s\n%s\n%s" % (
            path, "".join("%s:%s\n" % (n, headers[n]) for n in names), ";".join(names),
            hashlib.sha256(data).hexdigest())
        to_sign = "SDK-HMAC-SHA256\n%s\n%s" % (date, hashlib.sha256(canonical.encode()).hexdigest())
        sig = hmac.new(b.secret_key.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = "SDK-HMAC-SHA256 Access=%s, SignedHeaders=%s, Signature=%s" % (
            b.secret_id, ";".join(names), sig)
        conn = _connection(b.endpoint, b.tls, timeout or b.timeout)
        try:
            conn.request("POST", path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
            request_id = resp.getheader("x-request-id")
        except (OSError, http.client.HTTPException) as e:
            return _transport_reply(e, write)
        finally:
            conn.close()
        try:
            doc = json.loads(raw)
        except ValueError:
            return Reply("info" if write else "fail", "http.%d" % status, raw[:200].decode("utf-8", "replace"))
        if status >= 400:
            err = doc.get("error", doc) if isinstance(doc, dict) else {}
            code = err.get("error_code", "http.%d" % status) if isinstance(err, dict) else "http.%d" % status
            _note_call(request_id, b.endpoint, HUAWEI_AUDITED_AS.get(verb, verb), code)
            kind = "info" if (write and status >= 500) else "fail"
            return Reply(kind, code, err.get("error_msg", "") if isinstance(err, dict) else "",
                         request_id=request_id)
        _note_call(request_id, b.endpoint, HUAWEI_AUDITED_AS.get(verb, verb), None)
        return Reply("ok", fields=doc, request_id=request_id)
