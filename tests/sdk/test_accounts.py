"""Accounts: one account never sees or uses another's keys or ciphertexts, and the per-account
key quota is enforced with Tencent's code.

A fresh account is provisioned for each test through raftkms's admin endpoints (the internal
listener, authenticated with the cluster secret): RAFTKMS_NODE, RAFTKMS_CLUSTER_ID and
RAFTKMS_CLUSTER_SECRET come from dev.env like the KMS_* variables.
"""

import json
import os
import urllib.request
import uuid

import pytest

import kmstest


def admin(path, body=None):
    for var in ("RAFTKMS_NODE", "RAFTKMS_CLUSTER_ID", "RAFTKMS_CLUSTER_SECRET"):
        if not os.environ.get(var):
            pytest.fail("set %s (dev.env has it)" % var)
    req = urllib.request.Request(
        "http://%s%s" % (os.environ["RAFTKMS_NODE"], path),
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={
            "authorization": "Bearer " + os.environ["RAFTKMS_CLUSTER_SECRET"],
            "x-raftkms-cluster": os.environ["RAFTKMS_CLUSTER_ID"],
            "content-type": "application/json",
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture
def other_clients(cluster):
    """Clients of a brand-new second account, one per node."""
    account = admin("/admin/accounts", {"name": "sdk-other-" + uuid.uuid4().hex[:8]})
    cred = admin("/admin/credentials", {"uin": account["uin"]})
    return [kmstest.make_client(ep, cluster.region, cred["secret_id"], cred["secret_key"])
            for ep in cluster.endpoints]


def test_admin_endpoints_refuse_a_wrong_cluster_secret():
    req = urllib.request.Request(
        "http://%s/admin/accounts" % os.environ["RAFTKMS_NODE"],
        data=b'{"name": "intruder"}', method="POST",
        headers={"authorization": "Bearer wrong", "x-raftkms-cluster": os.environ["RAFTKMS_CLUSTER_ID"],
                 "content-type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as e:
        opener.open(req, timeout=30)
    assert e.value.code == 401
    assert all(a["name"] != "intruder" for a in admin("/admin/accounts"))


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
