"""The audit trail through the unmodified CloudAudit SDK client (LookUpEvents): every request,
refused ones included, has exactly one record, visible only to its own account, and querying it
needs the cloudaudit:LookUpEvents permission."""

import time
import uuid

from tencentcloud.cloudaudit.v20190319 import cloudaudit_client
from tencentcloud.cloudaudit.v20190319 import models as audit_models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile

import kmstest
from test_policies import Account, account  # noqa: F401  (the fixture, used by name)


def audit_client(cluster, node, cred):
    c = credential.Credential(cred["secret_id"], cred["secret_key"])
    return cloudaudit_client.CloudauditClient(
        c, cluster.region, ClientProfile(httpProfile=kmstest.http_profile(cluster.endpoints[node])))


def look_up(client, start, end, attributes=(), max_results=50, token=None):
    req = audit_models.LookUpEventsRequest()
    req.StartTime = start
    req.EndTime = end
    req.MaxResults = max_results
    if token:
        req.NextToken = token
    req.LookupAttributes = []
    for key, value in attributes:
        a = audit_models.LookupAttribute()
        a.AttributeKey = key
        a.AttributeValue = value
        req.LookupAttributes.append(a)
    return client.LookUpEvents(req)


def events_of(client, start, end, attributes=()):
    """Every matching event, following NextToken pages of 2 (the pages must not overlap)."""
    out, token = [], None
    for _ in range(200):
        resp = look_up(client, start, end, attributes, max_results=2, token=token)
        out.extend(resp.Events or [])
        if resp.ListOver:
            return out
        token = resp.NextToken
    raise AssertionError("LookUpEvents never reached ListOver")


def test_every_request_has_exactly_one_record_for_its_account_only(cluster, account):
    start = int(time.time()) - 1
    root = account.root
    request_ids = {}  # RequestId -> (EventName, ok)
    key = kmstest.call(root[0], "CreateKey", Alias=kmstest.unique_alias("audit"))
    request_ids[key.RequestId] = ("CreateKey", True)
    for i, c in enumerate(root):
        enc = kmstest.encrypt(c, key.KeyId, b"audited %d" % i)
        request_ids[enc.RequestId] = ("Encrypt", True)
        dec = kmstest.call(c, "Decrypt", CiphertextBlob=enc.CiphertextBlob)
        request_ids[dec.RequestId] = ("Decrypt", True)
        e = kmstest.expect_error(c, "DescribeKey", KeyId=str(uuid.uuid4()))
        request_ids[e.get_request_id()] = ("DescribeKey", False)
    dis = kmstest.call(root[1], "DisableKey", KeyId=key.KeyId)
    request_ids[dis.RequestId] = ("DisableKey", True)
    # A request refused before its caller is known (a wrong secret key) is recorded too.
    bad = kmstest.make_client(cluster.endpoints[2], cluster.region,
                              account.root_cred["secret_id"], "wrong-secret-key-wrong-secret-key")
    refused = kmstest.expect_error(bad, "ListKeys")
    assert refused.get_code() == "AuthFailure.SignatureFailure"

    # Queried through every node, each sees the whole cluster's records of this account.
    end = int(time.time()) + 1
    for node in range(len(cluster.endpoints)):
        client = audit_client(cluster, node, account.root_cred)
        events = events_of(client, start, end)
        seen = {}
        for ev in events:
            assert ev.AccountID == account.uin, ev.to_json_string()
            seen.setdefault(ev.RequestID, []).append(ev)
        assert len({ev.EventId for ev in events}) == len(events), "a page repeated an event"
        for rid, (name, ok) in request_ids.items():
            assert len(seen.get(rid, [])) == 1, (kmstest.node_name(node), name, rid, len(seen.get(rid, [])))
            ev = seen[rid][0]
            assert ev.EventName == name, ev.to_json_string()
            assert (ev.ErrorCode == 0) == ok, ev.to_json_string()
            assert ev.SecretId == account.root_cred["secret_id"]
            assert ev.SourceIPAddress, ev.to_json_string()
        # Filters: one request by id, one key's events.
        one = look_up(client, start, end, [("RequestId", key.RequestId)]).Events
        assert [e.RequestID for e in one] == [key.RequestId]
        on_key = look_up(client, start, end, [("ResourceName", key.KeyId)]).Events
        assert {e.EventName for e in on_key} >= {"CreateKey", "Encrypt", "Decrypt", "DisableKey"}
        # Nothing secret in a record.
        for ev in events:
            assert "audited" not in ev.CloudAuditEvent

    # Another account sees none of them.
    other = Account(cluster)
    theirs = events_of(audit_client(cluster, 1, other.root_cred), start, int(time.time()) + 1)
    assert not set(request_ids) & {e.RequestID for e in theirs}


def test_looking_up_events_needs_its_permission(cluster, account):
    start = int(time.time()) - 1
    cred, _ = account.identity("user", "auditor")
    client = audit_client(cluster, 0, cred)
    try:
        look_up(client, start, start + 10)
        raise AssertionError("LookUpEvents was allowed without a policy")
    except TencentCloudSDKException as e:
        assert e.get_code() == "AuthFailure.UnauthorizedOperation", e
    account.policy("audit-read", {"effect": "allow", "action": "cloudaudit:LookUpEvents",
                                  "resource": "*"})
    account.attach("user", "auditor", "audit-read")
    resp = look_up(client, start, int(time.time()) + 1)
    # Its own refused request above is on the record.
    assert any(e.EventName == "LookUpEvents" and e.ErrorCode != 0 for e in resp.Events or []), \
        resp.to_json_string()
