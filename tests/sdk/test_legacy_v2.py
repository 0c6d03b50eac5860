"""Tencent's legacy KMS API (v2, /v2/index.php) through the unmodified legacy SDK
qcloudapi-sdk-python 2.0.15 (module ``kms``, endpoint from its ``endpoint`` config key).

The SDK speaks HTTPS only and trusts a private CA through SSL_CERT_FILE. Every action runs on
every node, with both signature methods and both HTTP methods; keys made through the legacy API
are used through API 3.0 and back; a replayed request, a bad signature, an old timestamp and
other bad input get the legacy codes and change nothing.
"""

import json
import ssl
import time
import urllib.parse
import urllib.request

import pytest
from QcloudApi.qcloudapi import QcloudApi

import kmstest

VARIANTS = [("GET", "HmacSHA1"), ("GET", "HmacSHA256"), ("POST", "HmacSHA1"), ("POST", "HmacSHA256")]


@pytest.fixture(scope="module", autouse=True)
def https_with_the_cluster_ca(cluster):
    if cluster.scheme != "https":
        pytest.fail("the legacy SDK speaks HTTPS only: run the suite against a TLS cluster")
    mp = pytest.MonkeyPatch()
    mp.setenv("SSL_CERT_FILE", cluster.ca_bundle)
    yield
    mp.undo()


def v2(cluster, endpoint, method="GET", sign="HmacSHA1", secret_key=None, secret_id=None):
    config = {
        "Region": cluster.region,
        "secretId": secret_id or cluster.secret_id,
        "secretKey": secret_key or cluster.secret_key,
        "endpoint": endpoint,
        "method": method,
        "SignatureMethod": sign,
    }
    return QcloudApi("kms", config)


def call(service, action, **params):
    body = service.call(action, params)
    out = json.loads(body)
    assert "code" in out and "requestId" in out, out
    return out


def ok(service, action, **params):
    out = call(service, action, **params)
    assert out["code"] == 0, (action, params, out)
    assert out["message"] == "" and out["codeDesc"] == "Success", out
    return out


def refused(service, action, code, **params):
    out = call(service, action, **params)
    assert out["code"] == code, (action, params, out)
    assert out["message"] and out["codeDesc"] != "Success", out
    return out


def fetch(url, cluster):
    ctx = ssl.create_default_context(cafile=cluster.ca_bundle)
    with urllib.request.urlopen(url, context=ctx, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


@pytest.fixture
def v2_key(cluster, client):
    """Factory: a key created through the legacy API (scheduled for deletion afterwards)."""
    made = []

    def make(via):
        alias = kmstest.unique_alias("v2")[:32]
        out = ok(via, "CreateKey", alias=alias, description="legacy")
        meta = out["keyMetadata"]
        assert meta["alias"] == alias and meta["keyState"] == "Enabled"
        assert meta["keyUsage"] == "ENCRYPT/DECRYPT" and meta["description"] == "legacy"
        assert meta["deleteTime"] == 0 and isinstance(meta["createTime"], int)
        made.append(meta["keyId"])
        return meta["keyId"]

    yield make
    for key_id in made:
        try:
            kmstest.call(client, "DisableKey", KeyId=key_id)
            kmstest.call(client, "ScheduleKeyDeletion", KeyId=key_id, PendingWindowInDays=7)
        except Exception:
            pass


def test_every_action_on_every_node_with_both_signatures_and_methods(cluster, clients, v2_key):
    for i, endpoint in enumerate(cluster.endpoints):
        for method, sign in VARIANTS:
            s = v2(cluster, endpoint, method, sign)
            key_id = v2_key(s)
            # Linearizable: the key is visible at once on every node, through both APIs.
            for other in cluster.endpoints:
                meta = ok(v2(cluster, other), "GetKeyAttributes", keyId=key_id)["keyMetadata"]
                assert meta["keyId"] == key_id
            assert kmstest.describe(clients[(i + 1) % len(clients)], key_id).KeyState == "Enabled"
            listed = ok(s, "ListKey", offset=0, limit=1000)
            assert {"keyId": key_id} in listed["keys"] and listed["totalCount"] >= 1
            new_alias = kmstest.unique_alias("v2r")[:32]
            ok(s, "SetKeyAttributes", keyId=key_id, alias=new_alias)
            assert kmstest.describe(clients[0], key_id).Alias == new_alias

            data = b"legacy \x00 bytes %s %s" % (method.encode(), sign.encode())
            ctx = json.dumps({"b": "2", "a": "1"})
            blob = ok(s, "Encrypt", keyId=key_id, plaintext=kmstest.b64(data),
                      encryptionContext=ctx)
            assert blob["keyId"] == key_id
            out = ok(s, "Decrypt", ciphertextBlob=blob["ciphertextBlob"],
                     encryptionContext=json.dumps({"a": "1", "b": "2"}))
            assert out["keyId"] == key_id and kmstest.unb64(out["plaintext"]) == data
            # The same ciphertext through API 3.0, on another node (context in another order).
            got_id, plain = kmstest.decrypt(clients[(i + 2) % len(clients)], blob["ciphertextBlob"],
                                            context='{"a":"1","b":"2"}')
            assert got_id == key_id and plain == data

            dk = ok(s, "GenerateDataKey", keyId=key_id, keySpec="AES_128")
            assert len(kmstest.unb64(dk["plaintext"])) == 16
            dk = ok(s, "GenerateDataKey", keyId=key_id, numberOfBytes=48, keySpec="AES_128")
            assert len(kmstest.unb64(dk["plaintext"])) == 48
            assert kmstest.decrypt(clients[0], dk["ciphertextBlob"])[1] == kmstest.unb64(dk["plaintext"])
            dk = ok(s, "GenerateDataKey", keyId=key_id)
            assert len(kmstest.unb64(dk["plaintext"])) == 32

            ok(s, "DisableKey", keyId=key_id)
            assert ok(s, "GetKeyAttributes", keyId=key_id)["keyMetadata"]["keyState"] == "Disabled"
            ok(s, "EnableKey", keyId=key_id)


def test_a_key_made_through_api_3_works_through_v2_and_disabling_is_seen_at_once(
        cluster, clients, new_key):
    key_id = new_key("v3").KeyId
    blob = kmstest.encrypt(clients[0], key_id, b"from api 3").CiphertextBlob
    services = [v2(cluster, ep) for ep in cluster.endpoints]
    for s in services:
        out = ok(s, "Decrypt", ciphertextBlob=blob)
        assert kmstest.unb64(out["plaintext"]) == b"from api 3"
    # Disabled through v2 on node 2: API 3.0 on node 3 and v2 on node 1 refuse at once.
    ok(services[1], "DisableKey", keyId=key_id)
    e = kmstest.expect_error(clients[2], "Encrypt", KeyId=key_id, Plaintext=kmstest.b64(b"x"))
    assert e.get_code() == "ResourceUnavailable.CmkDisabled"
    out = refused(services[0], "Encrypt", 4550, keyId=key_id, plaintext=kmstest.b64(b"x"))
    assert out["codeDesc"] == "KeyDisabled"
    # Enabled through API 3.0: v2 encrypts again everywhere.
    kmstest.call(clients[1], "EnableKey", KeyId=key_id)
    for s in services:
        ok(s, "Encrypt", keyId=key_id, plaintext=kmstest.b64(b"y"))


def test_a_replayed_request_is_refused_and_changes_nothing(cluster, v2_key):
    s = v2(cluster, cluster.endpoints[0])
    key_id = v2_key(s)
    # generateUrl signs a request without sending it: send the very same URL twice.
    url = s.generateUrl("DisableKey", {"keyId": key_id})
    assert url.startswith("https://")
    assert fetch(url, cluster)["code"] == 0
    ok(s, "EnableKey", keyId=key_id)
    again = fetch(url, cluster)
    assert again["code"] == 4500 and again["codeDesc"] == "NonceUsed", again
    assert ok(s, "GetKeyAttributes", keyId=key_id)["keyMetadata"]["keyState"] == "Enabled"
    # Sent to another node's address (and Host), the signature no longer matches. (A replay that
    # keeps the original Host header would be accepted once there: docs/api.md §6.)
    other = url.replace(cluster.endpoints[0], cluster.endpoints[1])
    assert other != url
    assert fetch(other, cluster)["code"] == 4100


def test_bad_signatures_old_timestamps_and_unknown_credentials_are_refused(cluster, v2_key):
    s = v2(cluster, cluster.endpoints[0])
    key_id = v2_key(s)
    # A signed URL with one parameter changed.
    url = s.generateUrl("DisableKey", {"keyId": key_id})
    tampered = url.replace("Action=DisableKey", "Action=EnableKey")
    assert tampered != url
    out = fetch(tampered, cluster)
    assert out["code"] == 4100 and out["codeDesc"] == "AuthFailure", out
    # The wrong secret key, with each method.
    for method, sign in VARIANTS:
        bad = v2(cluster, cluster.endpoints[0], method, sign, secret_key="x" * 32)
        refused(bad, "DisableKey", 4100, keyId=key_id)
    # A timestamp 10 minutes old (the SDK keeps a Timestamp it is given).
    out = refused(s, "DisableKey", 4500, keyId=key_id, Timestamp=int(time.time()) - 600)
    assert out["codeDesc"] == "RequestExpired"
    # An unknown SecretId.
    out = refused(v2(cluster, cluster.endpoints[0], secret_id="AKIDnosuchcredential0000"),
                  "ListKey", 4104)
    assert out["codeDesc"] == "SecretidNotExit"
    # Temporary credentials are not offered.
    refused(s, "ListKey", 4105, Token="session-token")
    assert ok(s, "GetKeyAttributes", keyId=key_id)["keyMetadata"]["keyState"] == "Enabled"


def test_bad_input_gets_the_legacy_codes(cluster, v2_key):
    s = v2(cluster, cluster.endpoints[0], "POST", "HmacSHA256")
    key_id = v2_key(s)
    assert refused(s, "ScheduleKeyDeletion", 4000, keyId=key_id)["codeDesc"] == "InvalidAction"
    refused(s, "Encrypt", 4000, plaintext=kmstest.b64(b"x"))  # keyId missing
    refused(s, "GetKeyAttributes", 4000, keyId="not-a-key-id")
    out = refused(s, "GetKeyAttributes", 4530, keyId="00000000-0000-4000-8000-000000000000")
    assert out["codeDesc"] == "KeyNotFound"
    assert out["message"].startswith("(10630)")
    refused(s, "Encrypt", 4590, keyId=key_id, plaintext="***not base64***")
    refused(s, "Encrypt", 4590, keyId=key_id, plaintext=kmstest.b64(b"x" * 4097))
    refused(s, "Encrypt", 4540, keyId=key_id, plaintext=kmstest.b64(b"x"), encryptionContext="[1]")
    refused(s, "Decrypt", 4580, ciphertextBlob=kmstest.b64(b"garbage" * 10))
    refused(s, "GenerateDataKey", 4520, keyId=key_id, keySpec="AES_512")
    refused(s, "GenerateDataKey", 4000, keyId=key_id, numberOfBytes=1025)
    refused(s, "CreateKey", 4000)  # alias missing
    refused(s, "CreateKey", 4000, alias="a" * 33)
    refused(s, "CreateKey", 4490, alias=kmstest.unique_alias("v2u")[:32], keyUsage="SIGN/VERIFY")
    taken = ok(s, "GetKeyAttributes", keyId=key_id)["keyMetadata"]["alias"]
    assert refused(s, "CreateKey", 4500, alias=taken)["codeDesc"] == "AliasAlreadyExists"
    refused(s, "ListKey", 4000, limit=1001)
    refused(s, "ListKey", 6100, Region="xx-nowhere-1")
    # A value starting with @ is left out of the SDK's POST signature: refused, not trusted.
    out = refused(s, "CreateKey", 4000, alias=kmstest.unique_alias("v2at")[:32], description="@file")
    assert "`@`" in out["message"], out
    # A value holding & would make the signed string ambiguous: refused.
    out = refused(s, "CreateKey", 4000, alias=kmstest.unique_alias("v2amp")[:32], description="a&b")
    assert "`&`" in out["message"], out
    refused(s, "ListKey", 4000, **{"p%d" % i: "v" for i in range(70)})
    meta = ok(s, "GetKeyAttributes", keyId=key_id)["keyMetadata"]
    assert meta["alias"] == taken and meta["keyState"] == "Enabled"
