"""Helpers shared by the SDK compatibility tests.

Everything here talks to the server exactly the way a user of the unmodified Tencent Cloud Python SDK
would (``KmsClient`` + request models), except ``raw_post``, which builds a TC3-HMAC-SHA256 request by
hand for the cases the SDK cannot produce (stale timestamps, oversized bodies).
"""

import base64
import dataclasses
import datetime
import hashlib
import hmac
import json
import os
import ssl
import urllib.error
import urllib.request
import uuid

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.kms.v20190118 import kms_client, models

SERVICE = "kms"
API_VERSION = "2019-01-18"
JSON_CONTENT_TYPE = "application/json"


# --- cluster coordinates ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Cluster:
    endpoints: tuple  # "127.0.0.1:8081", ... (no scheme), node 1 first
    region: str
    secret_id: str
    secret_key: str
    scheme: str = "http"  # "https" when KMS_ENDPOINTS are https:// URLs
    ca_bundle: str = ""  # KMS_CA_BUNDLE: the CA the nodes' certificates chain to (https)


def cluster_from_env():
    missing = [v for v in ("KMS_ENDPOINTS", "KMS_REGION", "KMS_SECRET_ID", "KMS_SECRET_KEY")
               if not os.environ.get(v)]
    if missing:
        pytest.fail("set %s (tests/sdk/run.sh reads them from dev.env)" % ", ".join(missing))
    endpoints = []
    schemes = set()
    for url in os.environ["KMS_ENDPOINTS"].split(","):
        url = url.strip()
        if not url:
            continue
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "http", url
        if scheme not in ("http", "https"):
            pytest.fail("KMS_ENDPOINTS must be http:// or https:// URLs, got %r" % url)
        schemes.add(scheme)
        endpoints.append(rest.rstrip("/"))
    if len(schemes) > 1:
        pytest.fail("KMS_ENDPOINTS mixes http:// and https://")
    scheme = schemes.pop() if schemes else "http"
    ca = os.environ.get("KMS_CA_BUNDLE", "")
    if scheme == "https" and not ca:
        pytest.fail("https endpoints need KMS_CA_BUNDLE (the CA file of the cluster)")
    return Cluster(tuple(endpoints), os.environ["KMS_REGION"],
                   os.environ["KMS_SECRET_ID"], os.environ["KMS_SECRET_KEY"], scheme, ca)


# Set by cluster_from_env's caller (conftest) so every client built here speaks the same scheme.
TRANSPORT = {"scheme": "http", "ca_bundle": ""}


def make_client(endpoint, region, secret_id, secret_key):
    """A KmsClient for one node, built as in the howto: host:port endpoint, plain HTTP or HTTPS
    trusting the cluster's CA through HttpProfile(certification=...) (the SDK ignores
    REQUESTS_CA_BUNDLE)."""
    cred = credential.Credential(secret_id, secret_key)
    return kms_client.KmsClient(cred, region, ClientProfile(httpProfile=http_profile(endpoint)))


def http_profile(endpoint, **kwargs):
    """The SDK's HttpProfile for one node in the cluster's scheme (and CA, over HTTPS)."""
    if TRANSPORT["scheme"] == "https":
        return HttpProfile(protocol="https", endpoint=endpoint,
                           certification=TRANSPORT["ca_bundle"], **kwargs)
    return HttpProfile(protocol="http", endpoint=endpoint, **kwargs)


# --- small utilities -------------------------------------------------------------------------------

def unique_alias(prefix):
    """An alias no earlier run has used (the cluster keeps its data between runs)."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:16])


def b64(data):
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    return base64.b64decode(text, validate=True)


def request(model_name, **fields):
    """Build an SDK request model, e.g. request("EncryptRequest", KeyId=k, Plaintext=p)."""
    req = getattr(models, model_name)()
    for name, value in fields.items():
        if not hasattr(req, name):
            raise AttributeError("%s has no field %s" % (model_name, name))
        setattr(req, name, value)
    return req


def call(client, action, **fields):
    """Call one action through the SDK's own method, e.g. call(c, "DescribeKey", KeyId=k)."""
    return getattr(client, action)(request(action + "Request", **fields))


def expect_error(client, action, **fields):
    """Call an action that must fail; return the SDK exception (the test asserts its code)."""
    try:
        resp = call(client, action, **fields)
    except TencentCloudSDKException as e:
        assert e.get_request_id(), "error %s came without a RequestId" % e.get_code()
        return e
    pytest.fail("%s(%s) succeeded but should have failed: %s" % (action, fields, resp.to_json_string()))


def node_name(i):
    return "node %d" % (i + 1)


# --- key helpers -----------------------------------------------------------------------------------

def describe(client, key_id):
    return call(client, "DescribeKey", KeyId=key_id).KeyMetadata


def metadata_dict(client, key_id):
    """The full KeyMetadata as a plain dict, for "nothing changed" comparisons."""
    return json.loads(describe(client, key_id).to_json_string())


def encrypt(client, key_id, data, context=None):
    fields = {"KeyId": key_id, "Plaintext": b64(data)}
    if context is not None:
        fields["EncryptionContext"] = context
    return call(client, "Encrypt", **fields)


def decrypt(client, blob, context=None):
    fields = {"CiphertextBlob": blob}
    if context is not None:
        fields["EncryptionContext"] = context
    resp = call(client, "Decrypt", **fields)
    return resp.KeyId, unb64(resp.Plaintext)


def list_all_key_ids(client, page=200):
    """Walk ListKeys page by page; return (ids in order, TotalCount)."""
    ids, offset, total = [], 0, None
    while True:
        resp = call(client, "ListKeys", Offset=offset, Limit=page)
        total = resp.TotalCount
        keys = resp.Keys or []
        ids.extend(k.KeyId for k in keys)
        offset += page
        if not keys or offset >= total:
            return ids, total


# --- hand-built TC3-HMAC-SHA256 requests -----------------------------------------------------------

def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(secret_id, secret_key, host, content_type, body, timestamp, service=SERVICE):
    """The Authorization header value for a POST / request (tencent-kms-api.md §2)."""
    date = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d")
    scope = "%s/%s/tc3_request" % (date, service)
    canonical_request = "\n".join([
        "POST",
        "/",
        "",
        "content-type:%s\nhost:%s\n" % (content_type, host),
        "content-type;host",
        hashlib.sha256(body).hexdigest(),
    ])
    string_to_sign = "\n".join([
        "TC3-HMAC-SHA256",
        str(timestamp),
        scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
    ])
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac(k_date, service)
    k_signing = _hmac(k_service, "tc3_request")
    signature = hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return "TC3-HMAC-SHA256 Credential=%s/%s, SignedHeaders=content-type;host, Signature=%s" % (
        secret_id, scope, signature)


@dataclasses.dataclass
class RawReply:
    status: int
    content_type: str
    body: bytes

    def envelope(self):
        return json.loads(self.body)["Response"]


def _opener():
    """urllib without proxies, trusting the cluster's CA over HTTPS."""
    handlers = [urllib.request.ProxyHandler({})]
    if TRANSPORT["scheme"] == "https":
        handlers.append(urllib.request.HTTPSHandler(
            context=ssl.create_default_context(cafile=TRANSPORT["ca_bundle"])))
    return urllib.request.build_opener(*handlers)


def raw_post(cluster, endpoint, action, body, timestamp, signed_body=None):
    """POST a hand-signed TC3 request to one node; return its reply whatever the HTTP status.

    signed_body, when given, is what the signature covers instead of the body actually sent.
    """
    headers = {
        "Host": endpoint,
        "Content-Type": JSON_CONTENT_TYPE,
        "X-TC-Action": action,
        "X-TC-Version": API_VERSION,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Region": cluster.region,
        "X-TC-Language": "en-US",
        "Authorization": tc3_authorization(cluster.secret_id, cluster.secret_key, endpoint,
                                           JSON_CONTENT_TYPE,
                                           body if signed_body is None else signed_body, timestamp),
    }
    req = urllib.request.Request("%s://%s/" % (TRANSPORT["scheme"], endpoint), data=body,
                                 headers=headers, method="POST")
    try:
        with _opener().open(req, timeout=30) as resp:
            return RawReply(resp.status, resp.headers.get("Content-Type"), resp.read())
    except urllib.error.HTTPError as e:
        return RawReply(e.code, e.headers.get("Content-Type"), e.read())
    except (ConnectionError, urllib.error.URLError) as e:
        pytest.fail("%s on %s: the connection failed before a reply arrived (%r); the server must "
                    "answer with the JSON error envelope" % (action, endpoint, e))


def assert_error_envelope(reply, code):
    """What the SDK needs in order to surface the code: 200, exact content type, RequestId."""
    assert reply.status == 200, "HTTP %d: %r" % (reply.status, reply.body[:300])
    assert reply.content_type == JSON_CONTENT_TYPE, reply.content_type
    response = reply.envelope()
    assert response.get("RequestId"), response
    assert response.get("Error", {}).get("Code") == code, response
    assert response["Error"].get("Message"), response
