"""Accounts: one account never sees or uses another's keys or ciphertexts, and the per-account
key quota is enforced with Tencent's code.

A fresh account is provisioned for each test through raftkms's admin endpoints (the internal
listener): RAFTKMS_NODE and RAFTKMS_CLUSTER_ID come from dev.env like the KMS_* variables, with the
admin credential: RAFTKMS_CA, RAFTKMS_ADMIN_CERT and RAFTKMS_ADMIN_KEY (mutual TLS), or
RAFTKMS_ADMIN_TOKEN (a plaintext cluster).
"""

import json
import os
import ssl
import urllib.request
import uuid

import pytest

import kmstest


def _tls():
    return bool(os.environ.get("RAFTKMS_ADMIN_CERT"))


def _opener(with_admin_certificate=True):
    handlers = [urllib.request.ProxyHandler({})]
    if _tls():
        ctx = ssl.create_default_context(cafile=os.environ["RAFTKMS_CA"])
        # Nodes are identified by their certificates' identity, not by the address dialled.
        ctx.check_hostname = False
        if with_admin_certificate:
            ctx.load_cert_chain(os.environ["RAFTKMS_ADMIN_CERT"], os.environ["RAFTKMS_ADMIN_KEY"])
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    return urllib.request.build_opener(*handlers)


def _request(path, body=None, token=None):
    scheme = "https" if _tls() else "http"
    headers = {"x-raftkms-cluster": os.environ["RAFTKMS_CLUSTER_ID"],
               "content-type": "application/json"}
    if token is not None:
        headers["authorization"] = "Bearer " + token
    return urllib.request.Request(
        "%s://%s%s" % (scheme, os.environ["RAFTKMS_NODE"], path),
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers=headers,
    )


def admin(path, body=None):
    for var in ("RAFTKMS_NODE", "RAFTKMS_CLUSTER_ID"):
        if not os.environ.get(var):
            pytest.fail("set %s (dev.env has it)" % var)
    if not _tls() and not os.environ.get("RAFTKMS_ADMIN_TOKEN"):
        pytest.fail("set RAFTKMS_ADMIN_CERT/KEY and RAFTKMS_CA, or RAFTKMS_ADMIN_TOKEN (dev.env)")
    req = _request(path, body, token=None if _tls() else os.environ["RAFTKMS_ADMIN_TOKEN"])
    with _opener().open(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_admin_endpoints_refuse_a_caller_without_the_admin_credential():
    req = _request("/admin/accounts", {"name": "intruder"}, token="wrong-token-wrong-token")
    if _tls():
        # No admin certificate: the internal listener ends the handshake.
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _opener(with_admin_certificate=False).open(req, timeout=30)
    else:
        with pytest.raises(urllib.error.HTTPError) as e:
            _opener().open(req, timeout=30)
        assert e.value.code == 401
    assert all(a["name"] != "intruder" for a in admin("/admin/accounts"))


@pytest.fixture
def other_clients(cluster):
    """Clients of a brand-new second account, one per node."""
    account = admin("/admin/accounts", {"name": "sdk-other-" + uuid.uuid4().hex[:8]})
    cred = admin("/admin/credentials", {"uin": account["uin"]})
    return [kmstest.make_client(ep, cluster.region, cred["secret_id"], cred["secret_key"])
            for ep in cluster.endpoints]


def test_another_account_cannot_see_or_use_keys_or_ciphertexts(clients, other_clients, new_key):
    key = new_key("iso")
    blob = kmstest.encrypt(clients[0], key.KeyId, b"tenant A secret").CiphertextBlob
    for i, other in enumerate(other_clients):
        for action, fields in (
            ("DescribeKey", {"KeyId": key.KeyId}),
            ("Encrypt", {"KeyId": key.KeyId, "Plaintext": kmstest.b64(b"x")}),
            ("Decrypt", {"CiphertextBlob": blob}),
            ("ReEncrypt", {"CiphertextBlob": blob}),
            ("DisableKey", {"KeyId": key.KeyId}),
            ("GenerateDataKey", {"KeyId": key.KeyId, "KeySpec": "AES_256"}),
        ):
            e = kmstest.expect_error(other, action, **fields)
            assert e.get_code() == "ResourceUnavailable.CmkNotFound", (kmstest.node_name(i), action, e.get_code())
        listed = kmstest.call(other, "ListKeyDetail", KeyUsage="ALL", Limit=200)
        assert key.KeyId not in [m.KeyId for m in (listed.KeyMetadatas or [])]
    # The same alias is free in the other account: aliases are per account.
    resp = kmstest.call(other_clients[0], "CreateKey", Alias=key.Alias)
    assert resp.KeyId != key.KeyId
    # Nothing the other account tried changed the key.
    assert kmstest.describe(clients[1], key.KeyId).KeyState == "Enabled"
    assert kmstest.decrypt(clients[2], blob)[1] == b"tenant A secret"


def test_key_quota_is_enforced_per_account(other_clients):
    c = other_clients[0]
    limit = kmstest.call(c, "GetServiceStatus").CmkLimit
    assert limit and limit > 0
    made = []
    for i in range(limit):
        made.append(kmstest.call(other_clients[i % len(other_clients)], "CreateKey",
                                 Alias=kmstest.unique_alias("quota")).KeyId)
    assert kmstest.call(c, "GetServiceStatus").CmkUserCount == limit
    e = kmstest.expect_error(other_clients[1], "CreateKey", Alias=kmstest.unique_alias("quota"))
    assert e.get_code() == "LimitExceeded.CmkLimitExceeded"
    # A key scheduled for deletion no longer counts.
    kmstest.call(c, "DisableKey", KeyId=made[0])
    kmstest.call(c, "ScheduleKeyDeletion", KeyId=made[0], PendingWindowInDays=7)
    assert kmstest.call(other_clients[2], "CreateKey", Alias=kmstest.unique_alias("quota")).KeyId
