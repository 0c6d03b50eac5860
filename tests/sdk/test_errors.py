"""Error replies, as the unmodified SDK surfaces them (TencentCloudSDKException.get_code()).

Every test also checks that the failed call changed nothing: the key it aimed at is described again,
on every node, and must be exactly as before.
"""

import base64
import json
import os
import time
import uuid

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from kmstest import (assert_error_envelope, b64, call, describe, encrypt, expect_error, make_client,
                     metadata_dict, node_name, raw_post, tc3_authorization, unb64, unique_alias,
                     JSON_CONTENT_TYPE)

INVALID_PLAINTEXT = ("InvalidParameterValue", "InvalidParameterValue.InvalidPlaintext")


@pytest.fixture
def key(new_key):
    """An Enabled key for the test to aim at."""
    return new_key(prefix="err").KeyId


@pytest.fixture
def disabled_key(client, new_key):
    key_id = new_key(prefix="err-disabled").KeyId
    call(client, "DisableKey", KeyId=key_id)
    return key_id


class Unchanged:
    """Snapshot a key's metadata now; .check() asserts every node still describes it the same way."""

    def __init__(self, clients, key_id):
        self.clients, self.key_id = clients, key_id
        self.before = metadata_dict(clients[0], key_id)

    def check(self):
        for i, c in enumerate(self.clients):
            assert metadata_dict(c, self.key_id) == self.before, "%s: key changed" % node_name(i)


# --- authentication --------------------------------------------------------------------------------

def altered(secret):
    return secret[:-1] + ("A" if secret[-1] != "A" else "B")


def test_wrong_secret_key_is_signature_failure(cluster, clients, key):
    unchanged = Unchanged(clients, key)
    for i, ep in enumerate(cluster.endpoints):
        bad = make_client(ep, cluster.region, cluster.secret_id, altered(cluster.secret_key))
        e = expect_error(bad, "DisableKey", KeyId=key)
        assert e.get_code() == "AuthFailure.SignatureFailure", node_name(i)
    unchanged.check()


def test_unknown_secret_id_is_secret_id_not_found(cluster, clients, key):
    unchanged = Unchanged(clients, key)
    for i, ep in enumerate(cluster.endpoints):
        stranger = make_client(ep, cluster.region, "AKID" + uuid.uuid4().hex, cluster.secret_key)
        e = expect_error(stranger, "DisableKey", KeyId=key)
        assert e.get_code() == "AuthFailure.SecretIdNotFound", node_name(i)
    unchanged.check()


def test_hand_signer_matches_the_reference_capture():
    """Our TC3 signer (used below) reproduces the signature of a captured SDK request (howto §4)."""
    body = (b'{"Alias": "demo-alias", "Description": "captured", "KeyUsage": "ENCRYPT_DECRYPT", '
            b'"Type": 1, "Tags": [{"TagKey": "env", "TagValue": "dev"}]}')
    auth = tc3_authorization("AKIDexampleSecretId0001", "dummySecretKeyForCapture0123456789",
                             "127.0.0.1:18765", "application/json", body, 1795377449)
    assert auth == ("TC3-HMAC-SHA256 Credential=AKIDexampleSecretId0001/2026-11-22/kms/tc3_request, "
                    "SignedHeaders=content-type;host, "
                    "Signature=edd029cc9f4579b5c0d67d2e505e82291616ed3f7d6c8090e0ec04a2f88eac30")


def test_hand_built_request_is_accepted(cluster, key):
    """Control for the raw tests below: a correct hand-signed request succeeds on every node."""
    body = json.dumps({"KeyId": key}).encode()
    for i, ep in enumerate(cluster.endpoints):
        reply = raw_post(cluster, ep, "DescribeKey", body, int(time.time()))
        assert reply.status == 200, node_name(i)
        assert reply.content_type == JSON_CONTENT_TYPE, node_name(i)
        response = reply.envelope()
        assert "Error" not in response, (node_name(i), response)
        assert response["RequestId"], node_name(i)
        assert response["KeyMetadata"]["KeyId"] == key, node_name(i)


@pytest.mark.parametrize("skew", [-600, 600])
def test_stale_or_future_timestamp_is_signature_expire(cluster, clients, key, skew):
    unchanged = Unchanged(clients, key)
    body = json.dumps({"KeyId": key}).encode()
    for ep in cluster.endpoints:
        reply = raw_post(cluster, ep, "DisableKey", body, int(time.time()) + skew)
        assert_error_envelope(reply, "AuthFailure.SignatureExpire")
    unchanged.check()


def test_body_not_covered_by_the_signature_is_signature_failure(cluster, clients, key):
    unchanged = Unchanged(clients, key)
    sent = json.dumps({"KeyId": key}).encode()
    signed = json.dumps({"KeyId": str(uuid.uuid4())}).encode()
    for ep in cluster.endpoints:
        reply = raw_post(cluster, ep, "DisableKey", sent, int(time.time()), signed_body=signed)
        assert_error_envelope(reply, "AuthFailure.SignatureFailure")
    unchanged.check()


def test_body_over_one_mebibyte_is_request_size_limit_exceeded(cluster, clients, key):
    unchanged = Unchanged(clients, key)
    body = json.dumps({"KeyId": key, "Description": "d" * (1024 * 1024)}).encode()
    assert len(body) > 1024 * 1024
    for ep in cluster.endpoints:
        reply = raw_post(cluster, ep, "UpdateKeyDescription", body, int(time.time()))
        assert_error_envelope(reply, "RequestSizeLimitExceeded")
    unchanged.check()


# --- request shape ---------------------------------------------------------------------------------

def test_unknown_action_is_invalid_action(clients, key):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        with pytest.raises(TencentCloudSDKException) as raised:
            c.call_json("NoSuchAction", {"KeyId": key})
        assert raised.value.get_code() == "InvalidAction", node_name(i)
        assert raised.value.get_request_id(), node_name(i)
    unchanged.check()


def test_white_box_actions_are_unsupported_not_unknown(clients, key):
    for i, c in enumerate(clients):
        assert call(c, "DescribeWhiteBoxServiceStatus").ServiceEnabled is False, node_name(i)
        for action, fields in (("CreateWhiteBoxKey", {"Alias": "wb", "Algorithm": "AES_256"}),
                               ("DescribeWhiteBoxDecryptKey", {"KeyId": key}),
                               ("EncryptByWhiteBox", {"KeyId": key, "PlainText": b64(b"x")}),
                               ("EnableWhiteBoxKeys", {"KeyIds": [key]})):
            e = expect_error(c, action, **fields)
            assert e.get_code() == "UnsupportedOperation", (node_name(i), action)


def test_missing_required_parameter_is_missing_parameter(clients, key):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        assert expect_error(c, "DescribeKey").get_code() == "MissingParameter", node_name(i)
        assert expect_error(c, "DisableKey").get_code() == "MissingParameter", node_name(i)
        e = expect_error(c, "Encrypt", KeyId=key)
        assert e.get_code() == "MissingParameter", node_name(i)
    unchanged.check()


def test_unknown_key_id_is_cmk_not_found(clients, key):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        missing = str(uuid.uuid4())
        for action, extra in (("DescribeKey", {}), ("DisableKey", {}),
                              ("Encrypt", {"Plaintext": b64(b"x")})):
            e = expect_error(c, action, KeyId=missing, **extra)
            assert e.get_code() == "ResourceUnavailable.CmkNotFound", (node_name(i), action)
    unchanged.check()


# --- aliases ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["no-such-key", "00000000000000000000000000000000",
                                 "00000000-0000-0000-0000-00000000000g", "x" * 37])
def test_malformed_key_id_is_invalid_key_id(clients, key, bad):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        for action, fields in (("DescribeKey", {}), ("DisableKey", {}),
                               ("Encrypt", {"Plaintext": b64(b"x")}),
                               ("ScheduleKeyDeletion", {"PendingWindowInDays": 7})):
            e = expect_error(c, action, KeyId=bad, **fields)
            assert e.get_code() == "InvalidParameterValue.InvalidKeyId", (node_name(i), action)
        e = expect_error(c, "DisableKeys", KeyIds=[key, bad])
        assert e.get_code() == "InvalidParameterValue.InvalidKeyId", node_name(i)
        e = expect_error(c, "ReEncrypt", CiphertextBlob=encrypt(c, key, b"x").CiphertextBlob,
                         DestinationKeyId=bad)
        assert e.get_code() == "InvalidParameterValue.InvalidKeyId", node_name(i)
    unchanged.check()


def test_duplicate_alias_is_alias_already_exists(clients, new_key):
    first = new_key(prefix="dup")
    other = new_key(prefix="dup-other").KeyId
    unchanged_first, unchanged_other = Unchanged(clients, first.KeyId), Unchanged(clients, other)
    for i, c in enumerate(clients):
        e = expect_error(c, "CreateKey", Alias=first.Alias)
        assert e.get_code() == "InvalidParameterValue.AliasAlreadyExists", node_name(i)
        e = expect_error(c, "UpdateAlias", KeyId=other, Alias=first.Alias)
        assert e.get_code() == "InvalidParameterValue.AliasAlreadyExists", node_name(i)
    found = call(clients[0], "ListKeyDetail", SearchKeyAlias=first.Alias, KeyUsage="ALL")
    assert [m.KeyId for m in found.KeyMetadatas] == [first.KeyId]
    unchanged_first.check()
    unchanged_other.check()


@pytest.mark.parametrize("alias", ["bad alias!", "-leading-dash", "a" * 61, "别名"])
def test_malformed_alias_is_invalid_alias(clients, key, alias):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        e = expect_error(c, "CreateKey", Alias=alias)
        assert e.get_code() == "InvalidParameterValue.InvalidAlias", node_name(i)
        e = expect_error(c, "UpdateAlias", KeyId=key, Alias=alias)
        assert e.get_code() == "InvalidParameterValue.InvalidAlias", node_name(i)
    unchanged.check()


def test_sixty_character_alias_is_accepted(client, new_key):
    """The boundary next to the 61-character case above."""
    alias = unique_alias("a" * 60)[-60:]
    assert len(alias) == 60
    assert new_key(Alias=alias).Alias == alias


# --- plaintext and ciphertext checks ---------------------------------------------------------------

def test_invalid_base64_plaintext(clients, key):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        e = expect_error(c, "Encrypt", KeyId=key, Plaintext="not base64!!")
        assert e.get_code() in INVALID_PLAINTEXT, (node_name(i), e.get_code())
    unchanged.check()


def test_oversized_plaintext(clients, key):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        e = expect_error(c, "Encrypt", KeyId=key, Plaintext=b64(os.urandom(4097)))
        assert e.get_code() in INVALID_PLAINTEXT, (node_name(i), e.get_code())
    unchanged.check()


def test_oversized_encryption_context(clients, key):
    unchanged = Unchanged(clients, key)
    context = json.dumps({"k": "v" * 1100})
    for i, c in enumerate(clients):
        e = expect_error(c, "Encrypt", KeyId=key, Plaintext=b64(b"x"), EncryptionContext=context)
        assert e.get_code().startswith("InvalidParameter"), (node_name(i), e.get_code())
    unchanged.check()


def tampered(blob, index):
    """The blob with one byte of its decoded form flipped."""
    try:
        raw = bytearray(unb64(blob))
    except ValueError:
        pytest.fail("CiphertextBlob is not one standard Base64 string: %r" % blob[:80])
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_tampered_ciphertext_is_invalid_ciphertext(clients, key):
    # A long plaintext puts the middle of the blob well inside the encrypted body, past any header.
    blob = encrypt(clients[0], key, os.urandom(256)).CiphertextBlob
    size = len(unb64(blob))
    truncated = base64.b64encode(unb64(blob)[:-5]).decode()
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        for bad in (tampered(blob, size // 2), tampered(blob, size - 1), truncated):
            e = expect_error(c, "Decrypt", CiphertextBlob=bad)
            assert e.get_code() == "InvalidParameterValue.InvalidCiphertext", (node_name(i), e.get_code())
            e = expect_error(c, "ReEncrypt", CiphertextBlob=bad)
            assert e.get_code() == "InvalidParameterValue.InvalidCiphertext", (node_name(i), e.get_code())
    unchanged.check()


# --- numeric ranges --------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [0, 1025])
def test_generate_random_out_of_range(clients, count):
    for i, c in enumerate(clients):
        e = expect_error(c, "GenerateRandom", NumberOfBytes=count)
        assert e.get_code() == "InvalidParameterValue", node_name(i)


@pytest.mark.parametrize("fields", [{"NumberOfBytes": 0}, {"NumberOfBytes": 1025},
                                    {"KeySpec": "AES_512"}, {}])
def test_generate_data_key_bad_length(clients, key, fields):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        code = expect_error(c, "GenerateDataKey", KeyId=key, **fields).get_code()
        assert code.startswith(("InvalidParameter", "MissingParameter")), (node_name(i), code)
    unchanged.check()


@pytest.mark.parametrize("days", [6, 366])
def test_rotate_days_out_of_range(clients, key, days):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        e = expect_error(c, "EnableKeyRotation", KeyId=key, RotateDays=days)
        assert e.get_code() == "InvalidParameterValue", node_name(i)
    unchanged.check()
    assert call(clients[0], "GetKeyRotationStatus", KeyId=key).KeyRotationEnabled is False


# --- deletion state machine ------------------------------------------------------------------------

@pytest.mark.parametrize("days", [6, 31])
def test_pending_window_out_of_range(clients, disabled_key, days):
    unchanged = Unchanged(clients, disabled_key)
    for i, c in enumerate(clients):
        e = expect_error(c, "ScheduleKeyDeletion", KeyId=disabled_key, PendingWindowInDays=days)
        assert e.get_code() == "InvalidParameter.InvalidPendingWindowInDays", node_name(i)
    unchanged.check()
    assert describe(clients[0], disabled_key).KeyState == "Disabled"


def test_schedule_deletion_of_an_enabled_key(clients, key):
    unchanged = Unchanged(clients, key)
    for i, c in enumerate(clients):
        e = expect_error(c, "ScheduleKeyDeletion", KeyId=key, PendingWindowInDays=7)
        assert e.get_code() == "ResourceUnavailable.CmkShouldBeDisabled", node_name(i)
    unchanged.check()
    assert describe(clients[0], key).KeyState == "Enabled"


def test_cancel_deletion_of_a_key_not_pending(clients, key, disabled_key):
    for key_id in (key, disabled_key):
        unchanged = Unchanged(clients, key_id)
        for i, c in enumerate(clients):
            e = expect_error(c, "CancelKeyDeletion", KeyId=key_id)
            assert e.get_code() == "ResourceUnavailable.CmkNotPendingDelete", node_name(i)
        unchanged.check()
