"""BindCloudResource / UnbindCloudResource through the unmodified SDK, on every node: a bound key
cannot be disabled, archived or scheduled for deletion (FailedOperation.CmkUsedByCloudProduct)
until every binding is removed; binding twice succeeds; unbinding what is not bound, an unknown
key and bad parameters answer Tencent's codes and change nothing."""

import uuid

from kmstest import call, describe, expect_error, node_name


def resource():
    return "ins-" + uuid.uuid4().hex[:12]


def test_a_bound_key_stays_usable_until_unbound(clients, new_key):
    key_id = new_key(prefix="bind").KeyId
    res = resource()
    call(clients[0], "BindCloudResource", KeyId=key_id, ProductId="cvm", ResourceId=res)
    # Again, through another node: success, no change.
    call(clients[1], "BindCloudResource", KeyId=key_id, ProductId="cvm", ResourceId=res)
    other = resource()
    call(clients[2], "BindCloudResource", KeyId=key_id, ProductId="cbs", ResourceId=other)
    for i, c in enumerate(clients):
        for action, extra in (("DisableKey", {}), ("ArchiveKey", {}),
                              ("ScheduleKeyDeletion", {"PendingWindowInDays": 7})):
            e = expect_error(c, action, KeyId=key_id, **extra)
            assert e.get_code() == "FailedOperation.CmkUsedByCloudProduct", (node_name(i), action)
        e = expect_error(c, "DisableKeys", KeyIds=[key_id])
        assert e.get_code() == "FailedOperation.CmkUsedByCloudProduct", node_name(i)
        assert describe(c, key_id).KeyState == "Enabled", node_name(i)
    call(clients[0], "UnbindCloudResource", KeyId=key_id, ProductId="cvm", ResourceId=res)
    # One binding left: still refused.
    e = expect_error(clients[1], "DisableKey", KeyId=key_id)
    assert e.get_code() == "FailedOperation.CmkUsedByCloudProduct"
    call(clients[1], "UnbindCloudResource", KeyId=key_id, ProductId="cbs", ResourceId=other)
    call(clients[2], "DisableKey", KeyId=key_id)
    for i, c in enumerate(clients):
        assert describe(c, key_id).KeyState == "Disabled", node_name(i)


def test_binding_errors(clients, new_key):
    key_id = new_key(prefix="bind-err").KeyId
    res = resource()
    for i, c in enumerate(clients):
        e = expect_error(c, "UnbindCloudResource", KeyId=key_id, ProductId="cvm", ResourceId=res)
        assert e.get_code() == "ResourceUnavailable.CloudResourceBindingNotFound", node_name(i)
        e = expect_error(c, "BindCloudResource", KeyId=str(uuid.uuid4()), ProductId="cvm",
                         ResourceId=res)
        assert e.get_code() == "ResourceUnavailable.CmkNotFound", node_name(i)
        e = expect_error(c, "BindCloudResource", KeyId=key_id, ProductId="", ResourceId=res)
        assert e.get_code() in ("InvalidParameterValue", "MissingParameter"), node_name(i)
        e = expect_error(c, "BindCloudResource", KeyId=key_id, ProductId="cvm",
                         ResourceId="x" * 257)
        assert e.get_code() == "InvalidParameterValue", node_name(i)
        e = expect_error(c, "BindCloudResource", KeyId=key_id, ProductId="cvm")
        assert e.get_code() == "MissingParameter", node_name(i)
    # None of it bound anything: the key can still be disabled.
    call(clients[0], "DisableKey", KeyId=key_id)
    # A key pending deletion is not taken into use.
    call(clients[0], "ScheduleKeyDeletion", KeyId=key_id, PendingWindowInDays=7)
    e = expect_error(clients[1], "BindCloudResource", KeyId=key_id, ProductId="cvm", ResourceId=res)
    assert e.get_code() == "ResourceUnavailable.CmkStateNotSupport"
