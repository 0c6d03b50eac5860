"""Symmetric key lifecycle and crypto through the unmodified Tencent Cloud Python SDK, on every node.

The server is linearizable, so a write acknowledged by one node is visible to a read on any other node
at once: no test sleeps or retries to wait for replication.
"""

import os
import time

import kmstest

import pytest
from tencentcloud.kms.v20190118 import models

from kmstest import (b64, call, decrypt, describe, encrypt, expect_error, list_all_key_ids,
                     node_name, unb64, unique_alias)

DECRYPT_CONTEXT_ERRORS = ("InvalidParameterValue.InvalidCiphertext", "FailedOperation.DecryptError")


def assert_round_trips_everywhere(clients, key_id, blob, plaintext, context=None):
    for i, c in enumerate(clients):
        got_key, got = decrypt(c, blob, context)
        assert got_key == key_id, node_name(i)
        assert got == plaintext, node_name(i)


def states(clients, key_id):
    return [describe(c, key_id).KeyState for c in clients]


# --- creating and describing keys ------------------------------------------------------------------

def test_create_key_response_and_metadata(clients, new_key):
    alias = unique_alias("meta")
    before = int(time.time())
    tag = models.Tag()
    tag.TagKey, tag.TagValue = "team", "kms"
    created = new_key(Alias=alias, Description="metadata check", KeyUsage="ENCRYPT_DECRYPT",
                      Type=1, Tags=[tag])
    after = int(time.time())

    assert created.Alias == alias
    assert created.Description == "metadata check"
    assert created.KeyState == "Enabled"
    assert created.KeyUsage == "ENCRYPT_DECRYPT"
    assert before - 120 <= created.CreateTime <= after + 120
    assert created.TagCode == 0

    for i, c in enumerate(clients):
        m = describe(c, created.KeyId)
        where = node_name(i)
        assert m.KeyId == created.KeyId, where
        assert m.Alias == alias, where
        assert m.Description == "metadata check", where
        assert m.KeyState == "Enabled", where
        assert m.KeyUsage == "ENCRYPT_DECRYPT", where
        assert m.Origin == "TENCENT_KMS", where
        assert m.Type in (2, 4), where
        assert m.CreateTime == created.CreateTime, where
        assert m.KeyRotationEnabled is False, where
        assert m.Owner == "user", where
        assert isinstance(m.CreatorUin, int), where
        assert m.ResourceId == "creatorUin/%d/%s" % (m.CreatorUin, m.KeyId), where
        assert m.DeletionDate in (None, 0), where


def test_key_usage_defaults_to_encrypt_decrypt(client, new_key):
    created = new_key(prefix="default-usage")
    assert created.KeyUsage == "ENCRYPT_DECRYPT"
    assert describe(client, created.KeyId).KeyUsage == "ENCRYPT_DECRYPT"


def test_key_created_on_any_node_is_visible_on_every_node(clients, new_key):
    for i, via in enumerate(clients):
        created = new_key(prefix="anynode", via=via, Description="made on %s" % node_name(i))
        for j, c in enumerate(clients):
            m = describe(c, created.KeyId)
            assert m.Alias == created.Alias, "made on %s, read on %s" % (node_name(i), node_name(j))
            assert m.Description == "made on %s" % node_name(i)


def test_describe_keys_returns_every_requested_key(clients, new_key):
    keys = {new_key(prefix="dks").KeyId: None for _ in range(3)}
    for k in keys:
        keys[k] = describe(clients[0], k).Alias
    for i, c in enumerate(clients):
        metas = call(c, "DescribeKeys", KeyIds=list(keys)).KeyMetadatas
        assert {m.KeyId: m.Alias for m in metas} == keys, node_name(i)


def test_list_keys_pages_cover_every_key(clients, new_key):
    mine = {new_key(prefix="lk").KeyId for _ in range(3)}
    totals = []
    for i, c in enumerate(clients):
        ids, total = list_all_key_ids(c)
        assert len(ids) == total, node_name(i)
        assert len(set(ids)) == len(ids), "%s: a key appears on two pages" % node_name(i)
        assert mine <= set(ids), node_name(i)
        totals.append(total)

        first = call(c, "ListKeys", Offset=0, Limit=1)
        assert first.TotalCount == total
        assert len(first.Keys) == 1
        default_page = call(c, "ListKeys")
        assert default_page.TotalCount == total
        assert len(default_page.Keys) == min(10, total)  # default Limit is 10
        beyond = call(c, "ListKeys", Offset=total, Limit=10)
        assert not beyond.Keys
    assert len(set(totals)) == 1, "nodes disagree on TotalCount: %s" % totals


def test_list_key_detail_filters_and_orders(clients, new_key):
    token = unique_alias("lkd")
    older = new_key(Alias=token + "-a").KeyId
    time.sleep(1.1)  # distinct CreateTime seconds, so the order is fully determined
    newer = new_key(Alias=token + "-b").KeyId
    call(clients[1], "DisableKey", KeyId=newer)

    for i, c in enumerate(clients):
        where = node_name(i)

        def ids(**filters):
            """(KeyIds on this page, TotalCount) among this test's two keys."""
            resp = call(c, "ListKeyDetail", SearchKeyAlias=token, **filters)
            return [m.KeyId for m in resp.KeyMetadatas or []], resp.TotalCount

        assert ids(OrderType=0) == ([newer, older], 2), where
        assert ids(OrderType=1) == ([older, newer], 2), where
        assert ids(OrderType=1, Offset=1, Limit=1) == ([newer], 2), where
        assert ids(OrderType=0, Limit=1) == ([newer], 2), where
        assert ids(KeyState=1) == ([older], 1), where
        assert ids(KeyState=2) == ([newer], 1), where
        assert ids(KeyState=3) == ([], 0), where
        assert ids(KeyUsage="ALL", OrderType=1) == ([older, newer], 2), where
        assert ids(KeyUsage="ENCRYPT_DECRYPT", OrderType=1) == ([older, newer], 2), where
        assert ids(KeyUsage="ASYMMETRIC_DECRYPT_RSA_2048") == ([], 0), where

        by_id = call(c, "ListKeyDetail", SearchKeyAlias=older)
        assert [m.KeyId for m in by_id.KeyMetadatas] == [older], where
        detail = call(c, "ListKeyDetail", SearchKeyAlias=token + "-b").KeyMetadatas
        assert [(m.Alias, m.KeyState) for m in detail] == [(token + "-b", "Disabled")], where


def test_update_alias_is_visible_everywhere_and_frees_the_old_alias(clients, new_key):
    created = new_key(prefix="alias-old")
    renamed = unique_alias("alias-new")
    call(clients[1 % len(clients)], "UpdateAlias", KeyId=created.KeyId, Alias=renamed)
    for i, c in enumerate(clients):
        assert describe(c, created.KeyId).Alias == renamed, node_name(i)
    reused = new_key(Alias=created.Alias)
    assert reused.KeyId != created.KeyId
    assert reused.Alias == created.Alias


def test_update_key_description_is_visible_everywhere(clients, new_key):
    created = new_key(prefix="desc", Description="before")
    call(clients[-1], "UpdateKeyDescription", KeyId=created.KeyId, Description="after: 描述")
    for i, c in enumerate(clients):
        assert describe(c, created.KeyId).Description == "after: 描述", node_name(i)


# --- enable / disable ------------------------------------------------------------------------------

def test_disable_key_blocks_encrypt_on_every_node(clients, new_key):
    key_id = new_key(prefix="disable").KeyId
    blob = encrypt(clients[0], key_id, b"kept").CiphertextBlob
    call(clients[1 % len(clients)], "DisableKey", KeyId=key_id)
    assert states(clients, key_id) == ["Disabled"] * len(clients)
    for i, c in enumerate(clients):
        e = expect_error(c, "Encrypt", KeyId=key_id, Plaintext=b64(b"x"))
        assert e.get_code() == "ResourceUnavailable.CmkDisabled", node_name(i)
        e = expect_error(c, "Decrypt", CiphertextBlob=blob)
        assert e.get_code() == "ResourceUnavailable.CmkDisabled", node_name(i)

    call(clients[-1], "EnableKey", KeyId=key_id)
    assert states(clients, key_id) == ["Enabled"] * len(clients)
    for i, c in enumerate(clients):
        assert encrypt(c, key_id, b"again").KeyId == key_id, node_name(i)
    assert_round_trips_everywhere(clients, key_id, blob, b"kept")


def test_disable_keys_and_enable_keys_in_batch(clients, new_key):
    ids = [new_key(prefix="batch").KeyId for _ in range(3)]
    call(clients[-1], "DisableKeys", KeyIds=ids)
    for i, c in enumerate(clients):
        metas = call(c, "DescribeKeys", KeyIds=ids).KeyMetadatas
        assert sorted(m.KeyId for m in metas) == sorted(ids), node_name(i)
        assert {m.KeyState for m in metas} == {"Disabled"}, node_name(i)
        for k in ids:
            assert expect_error(c, "Encrypt", KeyId=k, Plaintext=b64(b"x")).get_code() == \
                "ResourceUnavailable.CmkDisabled"

    call(clients[0], "EnableKeys", KeyIds=ids)
    for i, c in enumerate(clients):
        metas = call(c, "DescribeKeys", KeyIds=ids).KeyMetadatas
        assert {m.KeyState for m in metas} == {"Enabled"}, node_name(i)
        for k in ids:
            assert encrypt(c, k, b"y").KeyId == k, node_name(i)


# --- encrypt / decrypt -----------------------------------------------------------------------------

def test_encrypt_on_one_node_decrypt_on_another(clients, new_key):
    key_id = new_key(prefix="xnode").KeyId  # created via node 1
    for i, c in enumerate(clients):
        plaintext = ("secret from %s" % node_name(i)).encode()
        resp = encrypt(c, key_id, plaintext)
        assert resp.KeyId == key_id
        assert resp.CiphertextBlob
        assert_round_trips_everywhere(clients, key_id, resp.CiphertextBlob, plaintext)


def test_binary_and_maximum_size_plaintexts_round_trip(clients, new_key):
    key_id = new_key(prefix="sizes").KeyId
    for i, plaintext in enumerate([bytes(range(256)), b"\x00", os.urandom(4096)]):
        blob = encrypt(clients[i % len(clients)], key_id, plaintext).CiphertextBlob
        assert_round_trips_everywhere(clients, key_id, blob, plaintext)


def test_encrypt_is_randomized(client, new_key):
    key_id = new_key(prefix="random-iv").KeyId
    first = encrypt(client, key_id, b"same input").CiphertextBlob
    second = encrypt(client, key_id, b"same input").CiphertextBlob
    assert first != second


def test_encryption_context_must_match_on_decrypt(clients, new_key):
    key_id = new_key(prefix="ctx").KeyId
    context = '{"purpose":"sdk-test","tenant":"a"}'
    blob = encrypt(clients[-1], key_id, b"bound to a context", context).CiphertextBlob
    assert_round_trips_everywhere(clients, key_id, blob, b"bound to a context", context)
    for i, c in enumerate(clients):
        for wrong in ('{"purpose":"sdk-test","tenant":"b"}', None):
            e = expect_error(c, "Decrypt", CiphertextBlob=blob,
                             **({} if wrong is None else {"EncryptionContext": wrong}))
            assert e.get_code() in DECRYPT_CONTEXT_ERRORS, (node_name(i), wrong, e.get_code())


def test_ciphertext_without_context_rejects_a_context(client, new_key):
    key_id = new_key(prefix="noctx").KeyId
    blob = encrypt(client, key_id, b"no context").CiphertextBlob
    e = expect_error(client, "Decrypt", CiphertextBlob=blob, EncryptionContext='{"a":"b"}')
    assert e.get_code() in DECRYPT_CONTEXT_ERRORS


# --- data keys and random bytes --------------------------------------------------------------------

@pytest.mark.parametrize("fields, length", [
    ({"KeySpec": "AES_128"}, 16),
    ({"KeySpec": "AES_256"}, 32),
    ({"NumberOfBytes": 1}, 1),
    ({"NumberOfBytes": 1024}, 1024),
    ({"KeySpec": "AES_256", "NumberOfBytes": 24}, 24),  # NumberOfBytes wins
])
def test_generate_data_key(clients, new_key, fields, length):
    key_id = new_key(prefix="gdk").KeyId
    for i, c in enumerate(clients):
        resp = call(c, "GenerateDataKey", KeyId=key_id, **fields)
        assert resp.KeyId == key_id, node_name(i)
        data_key = unb64(resp.Plaintext)
        assert len(data_key) == length, node_name(i)
        assert_round_trips_everywhere(clients, key_id, resp.CiphertextBlob, data_key)


def test_generate_data_key_with_encryption_context(clients, new_key):
    key_id = new_key(prefix="gdk-ctx").KeyId
    context = '{"bucket":"photos"}'
    resp = call(clients[-1], "GenerateDataKey", KeyId=key_id, KeySpec="AES_256",
                EncryptionContext=context)
    data_key = unb64(resp.Plaintext)
    assert_round_trips_everywhere(clients, key_id, resp.CiphertextBlob, data_key, context)
    e = expect_error(clients[0], "Decrypt", CiphertextBlob=resp.CiphertextBlob)
    assert e.get_code() in DECRYPT_CONTEXT_ERRORS


@pytest.mark.parametrize("count", [1, 32, 1024])
def test_generate_random(clients, count):
    draws = []
    for i, c in enumerate(clients):
        data = unb64(call(c, "GenerateRandom", NumberOfBytes=count).Plaintext)
        assert len(data) == count, node_name(i)
        draws.append(data)
    if count >= 32:
        assert len(set(draws)) == len(draws), "identical random draws"


# --- rotation and re-encryption --------------------------------------------------------------------

def test_key_rotation_status_follows_enable_and_disable(clients, new_key):
    key_id = new_key(prefix="rot-status").KeyId
    for c in clients:
        assert call(c, "GetKeyRotationStatus", KeyId=key_id).KeyRotationEnabled is False

    now = int(time.time())
    call(clients[1 % len(clients)], "EnableKeyRotation", KeyId=key_id, RotateDays=30)
    for i, c in enumerate(clients):
        assert call(c, "GetKeyRotationStatus", KeyId=key_id).KeyRotationEnabled is True, node_name(i)
        m = describe(c, key_id)
        assert m.KeyRotationEnabled is True, node_name(i)
        assert m.RotateDays == 30, node_name(i)
        assert now < m.NextRotateTime <= now + 31 * 86400, node_name(i)

    call(clients[-1], "DisableKeyRotation", KeyId=key_id)
    for i, c in enumerate(clients):
        assert call(c, "GetKeyRotationStatus", KeyId=key_id).KeyRotationEnabled is False, node_name(i)
        assert describe(c, key_id).KeyRotationEnabled is False, node_name(i)


def test_enable_key_rotation_defaults_to_365_days(clients, new_key):
    key_id = new_key(prefix="rot-default").KeyId
    call(clients[0], "EnableKeyRotation", KeyId=key_id)
    for i, c in enumerate(clients):
        m = describe(c, key_id)
        assert m.KeyRotationEnabled is True, node_name(i)
        assert m.RotateDays == 365, node_name(i)


def rotated_key(clients, new_key, prefix):
    """A fresh key with rotation enabled, a ciphertext made before RotateKey, and the metadata."""
    created = new_key(prefix=prefix)
    call(clients[0], "EnableKeyRotation", KeyId=created.KeyId, RotateDays=90)
    before = encrypt(clients[0], created.KeyId, b"before rotation").CiphertextBlob
    call(clients[1 % len(clients)], "RotateKey", KeyId=created.KeyId)
    return created, before


def test_ciphertexts_from_before_and_after_rotation_decrypt_everywhere(clients, new_key):
    created, before = rotated_key(clients, new_key, "rotate")
    after = encrypt(clients[-1], created.KeyId, b"after rotation").CiphertextBlob
    assert_round_trips_everywhere(clients, created.KeyId, before, b"before rotation")
    assert_round_trips_everywhere(clients, created.KeyId, after, b"after rotation")
    for i, c in enumerate(clients):
        m = describe(c, created.KeyId)
        assert m.LastRotateTime and m.LastRotateTime >= created.CreateTime, node_name(i)


def test_reencrypt_under_an_unrotated_key_returns_the_same_blob(clients, new_key):
    key_id = new_key(prefix="reenc-same").KeyId
    blob = encrypt(clients[0], key_id, b"unchanged").CiphertextBlob
    for i, c in enumerate(clients):
        resp = call(c, "ReEncrypt", CiphertextBlob=blob)
        assert resp.ReEncrypted is False, node_name(i)
        assert resp.CiphertextBlob == blob, node_name(i)
        assert resp.KeyId == key_id and resp.SourceKeyId == key_id, node_name(i)


def test_reencrypt_after_rotation_produces_a_new_blob(clients, new_key):
    created, before = rotated_key(clients, new_key, "reenc-rot")
    for i, c in enumerate(clients):
        resp = call(c, "ReEncrypt", CiphertextBlob=before)
        assert resp.ReEncrypted is True, node_name(i)
        assert resp.CiphertextBlob != before, node_name(i)
        assert resp.KeyId == created.KeyId and resp.SourceKeyId == created.KeyId, node_name(i)
        assert_round_trips_everywhere(clients, created.KeyId, resp.CiphertextBlob, b"before rotation")

        # A blob already under the newest version is returned as it is.
        again = call(c, "ReEncrypt", CiphertextBlob=resp.CiphertextBlob)
        assert again.ReEncrypted is False, node_name(i)
        assert again.CiphertextBlob == resp.CiphertextBlob, node_name(i)


def test_reencrypt_to_another_key_and_context(clients, new_key):
    source = new_key(prefix="reenc-src").KeyId
    target = new_key(prefix="reenc-dst").KeyId
    blob = encrypt(clients[0], source, b"moving", '{"from":"src"}').CiphertextBlob
    resp = call(clients[-1], "ReEncrypt", CiphertextBlob=blob, DestinationKeyId=target,
                SourceEncryptionContext='{"from":"src"}', DestinationEncryptionContext='{"to":"dst"}')
    assert resp.ReEncrypted is True
    assert resp.SourceKeyId == source
    assert resp.KeyId == target
    assert_round_trips_everywhere(clients, target, resp.CiphertextBlob, b"moving", '{"to":"dst"}')
    e = expect_error(clients[0], "Decrypt", CiphertextBlob=resp.CiphertextBlob,
                     EncryptionContext='{"from":"src"}')
    assert e.get_code() in DECRYPT_CONTEXT_ERRORS


# --- deletion and archiving ------------------------------------------------------------------------

def test_schedule_and_cancel_key_deletion(clients, new_key):
    key_id = new_key(prefix="delete").KeyId
    call(clients[0], "DisableKey", KeyId=key_id)

    now = time.time()
    resp = call(clients[1 % len(clients)], "ScheduleKeyDeletion", KeyId=key_id, PendingWindowInDays=7)
    assert resp.KeyId == key_id
    assert abs(resp.DeletionDate - (now + 7 * 86400)) <= 120
    for i, c in enumerate(clients):
        m = describe(c, key_id)
        assert m.KeyState == "PendingDelete", node_name(i)
        assert m.DeletionDate == resp.DeletionDate, node_name(i)
        code = expect_error(c, "Encrypt", KeyId=key_id, Plaintext=b64(b"x")).get_code()
        assert code.startswith("ResourceUnavailable."), (node_name(i), code)
        assert key_id not in list_all_key_ids(c)[0], "%s: ListKeys shows a PendingDelete key" % node_name(i)

    resp = call(clients[-1], "CancelKeyDeletion", KeyId=key_id)
    assert resp.KeyId == key_id
    for i, c in enumerate(clients):
        m = describe(c, key_id)
        assert m.KeyState == "Disabled", node_name(i)
        assert m.DeletionDate in (None, 0), node_name(i)
        assert key_id in list_all_key_ids(c)[0], node_name(i)


@pytest.mark.parametrize("days", [7, 30])
def test_schedule_key_deletion_window_bounds(client, new_key, days):
    key_id = new_key(prefix="delete-window").KeyId
    call(client, "DisableKey", KeyId=key_id)
    now = time.time()
    resp = call(client, "ScheduleKeyDeletion", KeyId=key_id, PendingWindowInDays=days)
    assert abs(resp.DeletionDate - (now + days * 86400)) <= 120
    assert describe(client, key_id).DeletionDate == resp.DeletionDate
    call(client, "CancelKeyDeletion", KeyId=key_id)


def test_archived_key_decrypts_but_does_not_encrypt(clients, new_key):
    key_id = new_key(prefix="archive").KeyId
    blob = encrypt(clients[0], key_id, b"archived data").CiphertextBlob
    call(clients[-1], "ArchiveKey", KeyId=key_id)
    assert states(clients, key_id) == ["Archived"] * len(clients)
    for i, c in enumerate(clients):
        e = expect_error(c, "Encrypt", KeyId=key_id, Plaintext=b64(b"new data"))
        assert e.get_code() == "ResourceUnavailable.CmkArchived", node_name(i)
    assert_round_trips_everywhere(clients, key_id, blob, b"archived data")

    call(clients[1 % len(clients)], "CancelKeyArchive", KeyId=key_id)
    assert states(clients, key_id) == ["Enabled"] * len(clients)
    for i, c in enumerate(clients):
        assert encrypt(c, key_id, b"new data").KeyId == key_id, node_name(i)


# --- service information ---------------------------------------------------------------------------

def test_get_service_status(clients):
    for i, c in enumerate(clients):
        assert call(c, "GetServiceStatus").ServiceEnabled is True, node_name(i)


def test_get_regions_contains_the_configured_region(clients, cluster):
    for i, c in enumerate(clients):
        regions = call(c, "GetRegions").Regions
        assert cluster.region in regions, (node_name(i), regions)


def test_list_algorithms_offers_symmetric_encryption(clients):
    for i, c in enumerate(clients):
        algorithms = call(c, "ListAlgorithms").SymmetricAlgorithms
        assert algorithms, node_name(i)
        for a in algorithms:
            assert a.KeyUsage == "ENCRYPT_DECRYPT" and a.Algorithm, (node_name(i), a.to_json_string())


def test_query_string_form_of_the_api_works(cluster):
    """The SDK's GET form: parameters flattened into the signed query string (Tags.0.TagKey,
    KeyIds.0, …), no body."""
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.kms.v20190118 import kms_client

    http = kmstest.http_profile(cluster.endpoints[-1], reqMethod="GET")
    get_client = kms_client.KmsClient(credential.Credential(cluster.secret_id, cluster.secret_key),
                                      cluster.region, ClientProfile(httpProfile=http))
    tag = models.Tag()
    tag.TagKey, tag.TagValue = "env", "get-form"
    created = kmstest.call(get_client, "CreateKey", Alias=kmstest.unique_alias("get"), Tags=[tag])
    metas = kmstest.call(get_client, "DescribeKeys", KeyIds=[created.KeyId]).KeyMetadatas
    assert [m.KeyId for m in metas] == [created.KeyId]
    blob = kmstest.encrypt(get_client, created.KeyId, b"via GET", context='{"a":"b"}').CiphertextBlob
    assert kmstest.decrypt(get_client, blob, context='{"a":"b"}') == (created.KeyId, b"via GET")
    listed = kmstest.call(get_client, "ListKeyDetail", TagFilters=[_tag_filter("env", ["get-form"])], Limit=200)
    assert created.KeyId in [m.KeyId for m in listed.KeyMetadatas]
    kmstest.call(get_client, "DisableKey", KeyId=created.KeyId)
    kmstest.call(get_client, "ScheduleKeyDeletion", KeyId=created.KeyId, PendingWindowInDays=7)


def _tag_filter(key, values):
    f = models.TagFilter()
    f.TagKey, f.TagValue = key, values
    return f
