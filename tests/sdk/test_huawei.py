"""The Huawei Cloud KMS API through the unmodified huaweicloudsdkkms 3.1.219 (with
huaweicloudsdkcore), against every node, over TLS trusting the cluster CA through
HttpConfig.ssl_ca_cert. Keys are the same keys the Tencent SDK sees: created through one API,
used and disabled through the other.
"""

import base64
import datetime
import hashlib
import json
import os
import subprocess
import tempfile

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from huaweicloudsdkkms.v2 import KmsClient
from huaweicloudsdkkms.v2 import model as m

import kmstest


@pytest.fixture(scope="module")
def project_id():
    p = os.environ.get("HWC_PROJECT_ID", "")
    if not p:
        pytest.fail("HWC_PROJECT_ID is not set (tests/sdk/run.sh reads it from dev.env)")
    return p


def hw_client(cluster, endpoint, project, sk=None, ak=None):
    cfg = HttpConfig.get_default_config()
    cfg.ssl_ca_cert = cluster.ca_bundle
    cred = BasicCredentials(ak or cluster.secret_id, sk or cluster.secret_key, project)
    return (KmsClient.new_builder()
            .with_credentials(cred)
            .with_endpoints(["https://" + endpoint])
            .with_http_config(cfg)
            .build())


@pytest.fixture(scope="module")
def hws(cluster, project_id):
    if cluster.scheme != "https":
        pytest.fail("run the suite against a TLS cluster")
    return [hw_client(cluster, ep, project_id) for ep in cluster.endpoints]


def op(client, method, req_model, body_model=None, **fields):
    body = getattr(m, body_model)(**fields) if body_model else None
    req = getattr(m, req_model)(body=body) if body_model else getattr(m, req_model)(**fields)
    return getattr(client, method)(req)


def hw_error(fn, *args, **kwargs):
    try:
        resp = fn(*args, **kwargs)
    except ClientRequestException as e:
        assert e.request_id, "error %s came without X-Request-Id" % e.error_code
        return e
    pytest.fail("succeeded but should have failed: %s" % resp)


@pytest.fixture
def hw_key(hws, client):
    made = []

    def make(via=None, **fields):
        fields.setdefault("key_alias", kmstest.unique_alias("hw"))
        resp = op(via or hws[0], "create_key", "CreateKeyRequest", "CreateKeyRequestBody", **fields)
        made.append(resp.key_info.key_id)
        return resp.key_info.key_id

    yield make
    for key_id in made:
        for action, extra in (("DisableKey", {}), ("ScheduleKeyDeletion", {"PendingWindowInDays": 7})):
            try:
                kmstest.call(client, action, KeyId=key_id, **extra)
            except Exception:
                pass


def rotated(items, node):
    """The per-node list with node ``node`` first (each served operation runs on every node)."""
    items = list(items)
    return items[node:] + items[:node]


def describe(hw, key_id):
    return op(hw, "list_key_detail", "ListKeyDetailRequest", "OperateKeyRequestBody", key_id=key_id).key_info


def test_key_lifecycle_on_every_node(cluster, hws, clients, hw_key):
    for i, hw in enumerate(hws):
        alias = kmstest.unique_alias("hwl")
        key_id = hw_key(via=hw, key_alias=alias, key_description="made through huawei")
        for other in hws:
            d = describe(other, key_id)
            assert (d.key_id, d.key_alias, d.key_state, d.origin) == (key_id, alias, "2", "kms")
            assert d.key_usage == "ENCRYPT_DECRYPT" and d.key_spec in ("AES_256", "SM4")
            assert d.default_key_flag == "0" and d.key_rotation_enabled == "false"
            assert d.creation_date.isdigit() and len(d.creation_date) == 13  # milliseconds
        # The same key through the Tencent SDK on another node.
        meta = kmstest.describe(clients[(i + 1) % len(clients)], key_id)
        assert meta.Alias == alias and meta.Description == "made through huawei"

        listed = op(hw, "list_keys", "ListKeysRequest", "ListKeysRequestBody", limit="1000")
        assert key_id in listed.keys and listed.total >= 1 and listed.truncated in ("true", "false")
        assert any(d.key_id == key_id and d.key_state == "2" for d in listed.key_details)

        new_alias = kmstest.unique_alias("hwr")
        r = op(hw, "update_key_alias", "UpdateKeyAliasRequest", "UpdateKeyAliasRequestBody",
               key_id=key_id, key_alias=new_alias)
        assert r.key_info.key_alias == new_alias
        op(hw, "update_key_description", "UpdateKeyDescriptionRequest", "UpdateKeyDescriptionRequestBody",
           key_id=key_id, key_description="renamed")
        assert kmstest.describe(clients[0], key_id).Alias == new_alias

        r = op(hw, "disable_key", "DisableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
        assert r.key_info.key_state == "3"
        e = hw_error(op, hw, "disable_key", "DisableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
        assert (e.status_code, e.error_code) == (400, "KMS.1301")
        assert kmstest.describe(clients[2 % len(clients)], key_id).KeyState == "Disabled"
        r = op(hw, "enable_key", "EnableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
        assert r.key_info.key_state == "2"
        e = hw_error(op, hw, "enable_key", "EnableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
        assert e.error_code == "KMS.1201"

        e = hw_error(op, hw, "delete_key", "DeleteKeyRequest", "ScheduleKeyDeletionRequestBody",
                     key_id=key_id, pending_days="31")
        assert e.error_code == "KMS.1401"
        # An enabled key must be disabled first (one rule for every API: docs/api.md §7).
        e = hw_error(op, hw, "delete_key", "DeleteKeyRequest", "ScheduleKeyDeletionRequestBody",
                     key_id=key_id, pending_days="7")
        assert e.error_code == "KMS.0308" and "disable" in e.error_msg
        assert describe(hw, key_id).key_state == "2"
        op(hw, "disable_key", "DisableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
        r = op(hw, "delete_key", "DeleteKeyRequest", "ScheduleKeyDeletionRequestBody",
               key_id=key_id, pending_days="7")
        assert (r.key_id, r.key_state) == (key_id, "4")
        assert describe(hw, key_id).scheduled_deletion_date.isdigit()
        e = hw_error(op, hw, "delete_key", "DeleteKeyRequest", "ScheduleKeyDeletionRequestBody",
                     key_id=key_id, pending_days="7")
        assert e.error_code == "KMS.1402"
        r = op(hw, "cancel_key_deletion", "CancelKeyDeletionRequest", "OperateKeyRequestBody", key_id=key_id)
        assert r.key_state == "3"
        e = hw_error(op, hw, "cancel_key_deletion", "CancelKeyDeletionRequest", "OperateKeyRequestBody",
                     key_id=key_id)
        assert e.error_code == "KMS.1501"


@pytest.mark.parametrize("node", [0, 1, 2])
def test_crypto_across_dialects(hws, clients, hw_key, new_key, node):
    hws, clients = rotated(hws, node), rotated(clients, node)
    key_id = hw_key()
    for i, hw in enumerate(hws):
        c = op(hw, "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody",
               key_id=key_id, plain_text="huawei text %d" % i, additional_authenticated_data="aad")
        assert c.key_id == key_id
        p = op(hws[(i + 1) % len(hws)], "decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody",
               cipher_text=c.cipher_text, additional_authenticated_data="aad")
        assert p.plain_text == "huawei text %d" % i
        assert base64.b64decode(p.plain_text_base64) == b"huawei text %d" % i
        e = hw_error(op, hw, "decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody",
                     cipher_text=c.cipher_text, additional_authenticated_data="other")
        assert e.error_code == "KMS.2201"
    # Without AAD, a Huawei ciphertext opens through the Tencent SDK, and back.
    c = op(hws[0], "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody", key_id=key_id,
           plain_text="to tencent")
    assert kmstest.decrypt(clients[1], c.cipher_text) == (key_id, b"to tencent")
    tencent_key = new_key("hwx").KeyId
    blob = kmstest.encrypt(clients[2], tencent_key, b"\x00binary\xff").CiphertextBlob
    p = op(hws[0], "decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody", cipher_text=blob)
    assert p.key_id == tencent_key and base64.b64decode(p.plain_text_base64) == b"\x00binary\xff"

    dk = op(hws[1], "create_datakey", "CreateDatakeyRequest", "CreateDatakeyRequestBody", key_id=key_id)
    assert len(bytes.fromhex(dk.plain_text)) == 32
    dk2 = op(hws[1], "create_datakey", "CreateDatakeyRequest", "CreateDatakeyRequestBody", key_id=key_id,
             datakey_length="512", key_spec="AES_128")
    assert len(bytes.fromhex(dk2.plain_text)) == 64
    no_plain = op(hws[2], "create_datakey_without_plaintext", "CreateDatakeyWithoutPlaintextRequest",
                  "CreateDatakeyRequestBody", key_id=key_id, key_spec="AES_128")
    assert getattr(no_plain, "plain_text", None) is None and no_plain.cipher_text
    assert "plain_text" not in no_plain.raw_content.decode()
    back = op(hws[0], "decrypt_datakey", "DecryptDatakeyRequest", "DecryptDatakeyRequestBody", key_id=key_id,
              cipher_text=dk.cipher_text, datakey_cipher_length="32")
    assert back.data_key == dk.plain_text and back.datakey_length == "32"
    assert back.datakey_dgst == hashlib.sha256(bytes.fromhex(dk.plain_text)).hexdigest()
    e = hw_error(op, hws[0], "decrypt_datakey", "DecryptDatakeyRequest", "DecryptDatakeyRequestBody",
                 key_id=key_id, cipher_text=dk.cipher_text, datakey_cipher_length="16")
    assert e.error_code == "KMS.2204"

    dek = os.urandom(32)
    wrapped = op(hws[2], "encrypt_datakey", "EncryptDatakeyRequest", "EncryptDatakeyRequestBody", key_id=key_id,
                 plain_text=(dek + hashlib.sha256(dek).digest()).hex(), datakey_plain_length="32")
    assert wrapped.datakey_length == "32"
    back = op(hws[1], "decrypt_datakey", "DecryptDatakeyRequest", "DecryptDatakeyRequestBody", key_id=key_id,
              cipher_text=wrapped.cipher_text, datakey_cipher_length="32")
    assert bytes.fromhex(back.data_key) == dek
    e = hw_error(op, hws[2], "encrypt_datakey", "EncryptDatakeyRequest", "EncryptDatakeyRequestBody",
                 key_id=key_id, plain_text=(dek + b"\x00" * 32).hex(), datakey_plain_length="32")
    assert e.error_code == "KMS.2103"

    r = op(hws[0], "create_random", "CreateRandomRequest", "GenRandomRequestBody", random_data_length="512")
    assert len(bytes.fromhex(r.random_data)) == 64
    e = hw_error(op, hws[0], "create_random", "CreateRandomRequest", "GenRandomRequestBody",
                 random_data_length="12")
    assert e.error_code == "KMS.1802"


def test_disabling_through_tencent_is_seen_by_huawei_at_once(hws, clients, hw_key):
    key_id = hw_key()
    kmstest.call(clients[1], "DisableKey", KeyId=key_id)
    for hw in hws:
        e = hw_error(op, hw, "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody",
                     key_id=key_id, plain_text="x")
        assert (e.status_code, e.error_code) == (400, "KMS.0209")
    op(hws[2], "enable_key", "EnableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
    kmstest.encrypt(clients[0], key_id, b"works again")


@pytest.mark.parametrize("node", [0, 1, 2])
def test_rotation(hws, hw_key, node):
    hws = rotated(hws, node)
    key_id = hw_key()
    hw = hws[1]
    s = op(hw, "show_key_rotation_status", "ShowKeyRotationStatusRequest", "OperateKeyRequestBody", key_id=key_id)
    assert s.key_rotation_enabled is False and s.number_of_rotations == 0
    op(hw, "enable_key_rotation", "EnableKeyRotationRequest", "OperateKeyRequestBody", key_id=key_id)
    e = hw_error(op, hw, "enable_key_rotation", "EnableKeyRotationRequest", "OperateKeyRequestBody", key_id=key_id)
    assert e.error_code == "KMS.2901"
    op(hw, "update_key_rotation_interval", "UpdateKeyRotationIntervalRequest",
       "UpdateKeyRotationIntervalRequestBody", key_id=key_id, rotation_interval=90)
    e = hw_error(op, hw, "update_key_rotation_interval", "UpdateKeyRotationIntervalRequest",
                 "UpdateKeyRotationIntervalRequestBody", key_id=key_id, rotation_interval=29)
    assert e.error_code == "KMS.3001"
    c = op(hw, "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody", key_id=key_id, plain_text="v1")
    r = op(hws[0], "rotate_on_demand", "RotateOnDemandRequest", "RotateOnDemandRequestBody", key_id=key_id)
    assert r.key_id == key_id
    s = op(hws[2], "show_key_rotation_status", "ShowKeyRotationStatusRequest", "OperateKeyRequestBody", key_id=key_id)
    assert s.key_rotation_enabled is True and s.rotation_interval == 90 and s.number_of_rotations == 1
    # Old ciphertexts still open after the rotation.
    p = op(hws[2], "decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody", cipher_text=c.cipher_text)
    assert p.plain_text == "v1"
    op(hw, "disable_key_rotation", "DisableKeyRotationRequest", "OperateKeyRequestBody", key_id=key_id)
    e = hw_error(op, hw, "update_key_rotation_interval", "UpdateKeyRotationIntervalRequest",
                 "UpdateKeyRotationIntervalRequestBody", key_id=key_id, rotation_interval=90)
    assert e.error_code == "KMS.0313"


def openssl(args, data):
    out = subprocess.run(["openssl", *args], input=data, capture_output=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("node", [0, 1, 2])
def test_asymmetric_sign_verify_and_encrypt(hws, hw_key, node):
    hws = rotated(hws, node)
    key_id = hw_key(key_spec="EC_P256", key_usage="SIGN_VERIFY")
    d = describe(hws[1], key_id)
    assert (d.key_spec, d.key_usage, d.key_type) == ("EC_P256", "SIGN_VERIFY", "2")
    pem = op(hws[1], "show_public_key", "ShowPublicKeyRequest", "OperateKeyRequestBody", key_id=key_id).public_key
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    message = b"sign me through huawei"
    digest = hashlib.sha256(message).digest()
    sig = op(hws[0], "sign", "SignRequest", "SignRequestBody", key_id=key_id, signing_algorithm="ECDSA_SHA_256",
             message=base64.b64encode(digest).decode()).signature
    ok = op(hws[2], "validate_signature", "ValidateSignatureRequest", "VerifyRequestBody", key_id=key_id,
            signing_algorithm="ECDSA_SHA_256", message=base64.b64encode(digest).decode(), signature=sig)
    assert ok.signature_valid == "true"
    bad = op(hws[2], "validate_signature", "ValidateSignatureRequest", "VerifyRequestBody", key_id=key_id,
             signing_algorithm="ECDSA_SHA_256", message=base64.b64encode(b"\x00" * 32).decode(), signature=sig)
    assert bad.signature_valid == "false"
    # openssl verifies the signature over the raw message with the public key.
    with tempfile.TemporaryDirectory() as tmp:
        pub, sigf = os.path.join(tmp, "pub.pem"), os.path.join(tmp, "sig")
        open(pub, "w").write(pem)
        open(sigf, "wb").write(base64.b64decode(sig))
        out = openssl(["dgst", "-sha256", "-verify", pub, "-signature", sigf], message)
        assert b"Verified OK" in out
    e = hw_error(op, hws[0], "sign", "SignRequest", "SignRequestBody", key_id=key_id,
                 signing_algorithm="ECDSA_SHA_256", message=base64.b64encode(b"short").decode())
    assert e.error_code == "KMS.0329"
    e = hw_error(op, hws[0], "sign", "SignRequest", "SignRequestBody", key_id=key_id,
                 signing_algorithm="ED25519_SHA_512", message=base64.b64encode(digest).decode())
    assert e.error_code == "KMS.0332"

    rsa = hw_key(key_spec="RSA_2048", key_usage="ENCRYPT_DECRYPT")
    c = op(hws[1], "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody", key_id=rsa,
           plain_text="rsa secret", encryption_algorithm="RSAES_OAEP_SHA_256")
    p = op(hws[2], "decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody", key_id=rsa,
           cipher_text=c.cipher_text, encryption_algorithm="RSAES_OAEP_SHA_256")
    assert p.plain_text == "rsa secret"


@pytest.mark.parametrize("node", [0, 1, 2])
def test_bring_your_own_key(hws, hw_key, node):
    hws = rotated(hws, node)
    key_id = hw_key(origin="external")
    assert describe(hws[0], key_id).key_state == "5"
    params = op(hws[1], "create_parameters_for_import", "CreateParametersForImportRequest",
                "GetParametersForImportRequestBody", key_id=key_id, wrapping_algorithm="RSAES_OAEP_SHA_256")
    assert params.key_id == key_id and params.import_token and isinstance(params.expiration_time, int)
    spec = describe(hws[0], key_id).key_spec
    material = os.urandom(16 if spec == "SM4" else 32)
    with tempfile.TemporaryDirectory() as tmp:
        der = os.path.join(tmp, "pub.der")
        open(der, "wb").write(base64.b64decode(params.public_key))
        wrapped = openssl(["pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", der,
                           "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                           "-pkeyopt", "rsa_mgf1_md:sha256"], material)
    op(hws[2], "import_key_material", "ImportKeyMaterialRequest", "ImportKeyMaterialRequestBody",
       key_id=key_id, import_token=params.import_token, encrypted_key_material=base64.b64encode(wrapped).decode())
    assert describe(hws[0], key_id).key_state == "2"
    c = op(hws[0], "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody", key_id=key_id, plain_text="byok")
    assert op(hws[1], "decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody",
              cipher_text=c.cipher_text).plain_text == "byok"
    op(hws[1], "delete_imported_key_material", "DeleteImportedKeyMaterialRequest", "OperateKeyRequestBody",
       key_id=key_id)
    assert describe(hws[2], key_id).key_state == "5"


@pytest.mark.parametrize("node", [0, 1, 2])
def test_tags_and_quotas(hws, hw_key, node):
    hws = rotated(hws, node)
    key_id = hw_key()
    hws[0].create_kms_tag(m.CreateKmsTagRequest(
        key_id=key_id, body=m.CreateKmsTagRequestBody(tag=m.TagItem(key="team", value="payments"))))
    hws[1].batch_create_kms_tags(m.BatchCreateKmsTagsRequest(
        key_id=key_id, body=m.BatchCreateKmsTagsRequestBody(
            action="create", tags=[m.TagItem(key="env", value="prod"), m.TagItem(key="tier", value="1")])))
    t = hws[2].show_kms_tags(m.ShowKmsTagsRequest(key_id=key_id))
    assert t.exist_tags_num == 3
    assert sorted((x.key, x.value) for x in t.tags) == [("env", "prod"), ("team", "payments"), ("tier", "1")]
    hws[0].delete_tag(m.DeleteTagRequest(key_id=key_id, key="tier"))
    e = hw_error(hws[0].delete_tag, m.DeleteTagRequest(key_id=key_id, key="tier"))
    assert (e.status_code, e.error_code) == (404, "KMS.0416")
    hws[1].batch_create_kms_tags(m.BatchCreateKmsTagsRequest(
        key_id=key_id, body=m.BatchCreateKmsTagsRequestBody(action="delete", tags=[m.TagItem(key="env", value="")])))
    t = hws[2].show_kms_tags(m.ShowKmsTagsRequest(key_id=key_id))
    assert [(x.key, x.value) for x in t.tags] == [("team", "payments")] and t.exist_tags_num == 1

    # Tag search across keys: every tag key in use, and keys found by tags.
    listed = {t.key: t.values for t in hws[1].list_kms_tags(m.ListKmsTagsRequest()).tags}
    assert "payments" in listed["team"]
    found = hws[2].list_kms_by_tags(m.ListKmsByTagsRequest(
        resource_instances="resource_instances", body=m.ListKmsByTagsRequestBody(
            action="filter", limit="1000", offset="0", tags=[m.Tag(key="team", values=["payments"])])))
    ids = [x.resource_id for x in found.resources]
    assert key_id in ids and found.total_count == len(ids)
    mine = [x for x in found.resources if x.resource_id == key_id][0]
    assert mine.resource_detail.key_id == key_id and [(t.key, t.value) for t in mine.tags] == [("team", "payments")]
    count = hws[0].list_kms_by_tags(m.ListKmsByTagsRequest(
        resource_instances="resource_instances", body=m.ListKmsByTagsRequestBody(
            action="count", tags=[m.Tag(key="team", values=["payments"])])))
    assert count.total_count == found.total_count
    none = hws[0].list_kms_by_tags(m.ListKmsByTagsRequest(
        resource_instances="resource_instances", body=m.ListKmsByTagsRequestBody(
            action="filter", tags=[m.Tag(key="team", values=["nobody-" + kmstest.unique_alias("x")])])))
    assert none.total_count == 0 and none.resources == []

    n = hws[0].show_user_instances(m.ShowUserInstancesRequest()).instance_num
    assert isinstance(n, int) and n >= 1
    q = hws[1].show_user_quotas(m.ShowUserQuotasRequest()).quotas.resources
    cmk = [r for r in q if r.type == "CMK"][0]
    assert cmk.used == n and cmk.quota >= cmk.used


def signed_raw(cluster, project, method, path, body=b"", date=None, sk=None):
    """A request signed by the SDK's own Signer, sent by hand (for cases the SDK cannot make)."""
    endpoint = cluster.endpoints[0]
    headers = {"Content-Type": "application/json;charset=utf-8", "X-Project-Id": project,
               "User-Agent": "raftkms-test"}
    if date:
        headers["X-Sdk-Date"] = date
    req = SdkRequest(method=method, schema="https", host=endpoint, resource_path=path,
                     query_params=[], header_params=headers, body=body)

    class Cred:
        ak = cluster.secret_id
        sk_ = None
    Cred.sk = sk or cluster.secret_key
    Signer(Cred()).sign(req)
    return requests.request(method, "https://%s%s" % (endpoint, path), headers=req.header_params, data=body,
                            verify=cluster.ca_bundle, timeout=30)


def test_bad_requests_get_huawei_errors_and_change_nothing(cluster, hws, project_id, hw_key):
    key_id = hw_key()
    before = describe(hws[0], key_id)
    bad_sk = hw_client(cluster, cluster.endpoints[0], project_id, sk="wrong-secret-key-0000000000")
    e = hw_error(op, bad_sk, "disable_key", "DisableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
    assert (e.status_code, e.error_code) == (401, "APIGW.0301")
    unknown = hw_client(cluster, cluster.endpoints[0], project_id, ak="AKIDnosuchcredential0000")
    e = hw_error(op, unknown, "disable_key", "DisableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
    assert (e.status_code, e.error_code) == (401, "APIGW.0301")
    other_project = hw_client(cluster, cluster.endpoints[0], "0" * 32)
    e = hw_error(op, other_project, "disable_key", "DisableKeyRequest", "OperateKeyRequestBody", key_id=key_id)
    assert (e.status_code, e.error_code) == (403, "KMS.0321")
    e = hw_error(op, hws[1], "list_key_detail", "ListKeyDetailRequest", "OperateKeyRequestBody", key_id="nope")
    assert (e.status_code, e.error_code) == (400, "KMS.0205")
    e = hw_error(op, hws[1], "list_key_detail", "ListKeyDetailRequest", "OperateKeyRequestBody",
                 key_id="00000000-0000-4000-8000-000000000000")
    assert (e.status_code, e.error_code) == (404, "KMS.0207")
    e = hw_error(op, hws[2], "create_key", "CreateKeyRequest", "CreateKeyRequestBody")
    assert e.error_code == "KMS.0204"
    e = hw_error(op, hws[2], "create_key", "CreateKeyRequest", "CreateKeyRequestBody", key_alias="obs/default")
    assert e.error_code == "KMS.1101"
    e = hw_error(op, hws[2], "create_key", "CreateKeyRequest", "CreateKeyRequestBody",
                 key_alias=kmstest.unique_alias("hwe"), key_spec="ED25519")
    assert e.error_code == "KMS.1110"
    e = hw_error(op, hws[2], "create_key", "CreateKeyRequest", "CreateKeyRequestBody", key_alias=before.key_alias)
    assert e.error_code == "KMS.1104"
    e = hw_error(op, hws[0], "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody", key_id=key_id)
    assert e.error_code == "KMS.0204"

    path = "/v1.0/%s/kms/disable-key" % project_id
    body = json.dumps({"key_id": key_id}).encode()
    old = (datetime.datetime.utcnow() - datetime.timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    r = signed_raw(cluster, project_id, "POST", path, body, date=old)
    assert r.status_code == 401 and r.json()["error_code"] == "APIGW.0301", r.text
    r = signed_raw(cluster, project_id, "POST", "/v1.0/%s/kms/create-grant" % project_id, b"{}")
    assert r.status_code == 400 and r.json()["error"]["error_code"] == "KMS.0201", r.text
    r = signed_raw(cluster, project_id, "GET", path)
    assert r.status_code == 405 and r.json()["error"]["error_code"] == "KMS.0215", r.text
    r = signed_raw(cluster, project_id, "POST", path, b"{not json")
    assert r.status_code == 400 and r.json()["error"]["error_code"] == "KMS.0202", r.text
    assert r.headers.get("X-Request-Id")
    # Nothing above changed the key, and a well-formed request signed the same way works.
    after = describe(hws[0], key_id)
    assert (after.key_state, after.key_alias) == (before.key_state, before.key_alias) == ("2", before.key_alias)
    r = signed_raw(cluster, project_id, "POST", path, body)
    assert r.status_code == 200 and r.json()["key_info"]["key_state"] == "3", r.text


def huawei_project_id(uin, region):
    """The derivation of src/http/huawei/project.rs."""
    h = hashlib.sha256(b"raftkms huawei project id v1\0" + str(uin).encode() + b"\0" + region.encode())
    return h.hexdigest()[:32]


def test_policies_and_default_keys_bind_every_api(cluster, monkeypatch):
    """A sub-user's policies govern the Huawei and legacy APIs under the API 3.0 action names, and
    the keys a cloud product's service role creates are Huawei's default keys."""
    from test_policies import Account
    from test_legacy_v2 import v2 as v2_service, call as v2_call

    monkeypatch.setenv("SSL_CERT_FILE", cluster.ca_bundle)  # the legacy SDK's only CA setting

    account = Account(cluster)
    project = huawei_project_id(account.uin, cluster.region)
    key_id = account.key()
    cred, _ = account.identity("user", "hw-reader")
    account.policy("read-encrypt", {"effect": "allow", "action": ["kms:DescribeKey", "kms:Encrypt"],
                                    "resource": "*"})
    account.attach("user", "hw-reader", "read-encrypt")
    # Symmetric Decrypt does not cover a private-key decryption: that is AsymmetricRsaDecrypt.
    rsa = kmstest.call(account.root[0], "CreateKey", Alias=kmstest.unique_alias("iamrsa"),
                       KeyUsage="ASYMMETRIC_DECRYPT_RSA_2048").KeyId
    dcred, _ = account.identity("user", "hw-decrypter")
    account.policy("sym-decrypt", {"effect": "allow", "action": ["kms:Decrypt", "kms:GetPublicKey"],
                                   "resource": "*"})
    account.attach("user", "hw-decrypter", "sym-decrypt")
    dec = hw_client(cluster, cluster.endpoints[1], project, ak=dcred["secret_id"], sk=dcred["secret_key"])
    c = op(dec, "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody", key_id=rsa,
           plain_text="for the private key", encryption_algorithm="RSAES_OAEP_SHA_256")
    e = hw_error(op, dec, "decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody", key_id=rsa,
                 cipher_text=c.cipher_text, encryption_algorithm="RSAES_OAEP_SHA_256")
    assert (e.status_code, e.error_code) == (403, "KMS.0307"), e
    account.policy("rsa-decrypt", {"effect": "allow", "action": "kms:AsymmetricRsaDecrypt", "resource": "*"})
    account.attach("user", "hw-decrypter", "rsa-decrypt")
    p = op(dec, "decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody", key_id=rsa,
           cipher_text=c.cipher_text, encryption_algorithm="RSAES_OAEP_SHA_256")
    assert p.plain_text == "for the private key"
    for i, ep in enumerate(cluster.endpoints):
        hw = hw_client(cluster, ep, project, ak=cred["secret_id"], sk=cred["secret_key"])
        assert describe(hw, key_id).key_id == key_id
        c = op(hw, "encrypt_data", "EncryptDataRequest", "EncryptDataRequestBody", key_id=key_id,
               plain_text="allowed")
        for method, req, body, fields in (
                ("decrypt_data", "DecryptDataRequest", "DecryptDataRequestBody", {"cipher_text": c.cipher_text}),
                ("disable_key", "DisableKeyRequest", "OperateKeyRequestBody", {"key_id": key_id})):
            e = hw_error(op, hw, method, req, body, **fields)
            assert (e.status_code, e.error_code) == (403, "KMS.0307"), (method, e)
        legacy = v2_service(cluster, ep, secret_id=cred["secret_id"], secret_key=cred["secret_key"])
        assert v2_call(legacy, "GetKeyAttributes", keyId=key_id)["code"] == 0
        out = v2_call(legacy, "Decrypt", ciphertextBlob=c.cipher_text)
        assert (out["code"], out["codeDesc"]) == (4102, "UnauthorizedOperation"), out
        assert v2_call(legacy, "DisableKey", keyId=key_id)["code"] == 4102
    # Nothing the refusals touched changed.
    root_hw = hw_client(cluster, cluster.endpoints[0], project, ak=account.root_cred["secret_id"],
                        sk=account.root_cred["secret_key"])
    assert describe(root_hw, key_id).key_state == "2"

    # A product's key: default_key_flag "1", listed, and never disabled, deleted or renamed.
    _, cbs = account.identity("role", "cbs-service", service="cbs")
    account.policy("product", {"effect": "allow", "action": "kms:*", "resource": "*"})
    account.attach("role", "cbs-service", "product")
    made = kmstest.call(cbs[0], "CreateKey", Alias=kmstest.unique_alias("cbs")).KeyId
    d = describe(root_hw, made)
    assert d.default_key_flag == "1" and describe(root_hw, key_id).default_key_flag == "0"
    listed = op(root_hw, "list_keys", "ListKeysRequest", "ListKeysRequestBody", limit="1000")
    assert made in listed.keys and key_id in listed.keys
    for method, req, body, fields in (
            ("disable_key", "DisableKeyRequest", "OperateKeyRequestBody", {}),
            ("delete_key", "DeleteKeyRequest", "ScheduleKeyDeletionRequestBody", {"pending_days": "7"}),
            ("update_key_alias", "UpdateKeyAliasRequest", "UpdateKeyAliasRequestBody",
             {"key_alias": kmstest.unique_alias("renamed")})):
        e = hw_error(op, root_hw, method, req, body, key_id=made, **fields)
        assert (e.status_code, e.error_code) == (400, "KMS.0211"), (method, e)
    assert describe(root_hw, made).key_state == "2"
