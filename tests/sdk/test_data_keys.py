"""Hosted data keys through the unmodified SDK, on every node: GenerateDataKey with
IsHostedByKms=1, ImportDataKey (both ImportTypes), DescribeDataKey(s), ListDataKeys,
ListDataKeyDetail (every filter), Enable/DisableDataKey(s), GetDataKeyCiphertextBlob,
GetDataKeyPlaintext, UpdateDataKeyName/Description, Schedule/CancelDataKeyDeletion, the quota,
and a returned plaintext encrypted to the caller's public key (EncryptionPublicKey) as openssl
decrypts it. Every refusal answers Tencent's code and changes nothing."""

import os
import subprocess
import tempfile
import uuid

import pytest

import kmstest
from kmstest import b64, call, expect_error, node_name, unb64


def name(prefix="dk"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


@pytest.fixture
def key(new_key):
    return new_key(prefix="dk-cmk").KeyId


@pytest.fixture
def new_data_key(client):
    """Factory: new_data_key(key_id, via=client, **GenerateDataKey fields) -> response. Data keys
    made through it are scheduled for deletion when the test ends (best effort)."""
    made = []

    def make(key_id, via=None, **fields):
        fields.setdefault("KeySpec", "AES_256")
        fields.setdefault("DataKeyName", name())
        resp = call(via or client, "GenerateDataKey", KeyId=key_id, IsHostedByKms=1, **fields)
        assert resp.DataKeyId, resp.to_json_string()
        made.append(resp.DataKeyId)
        return resp

    make.adopt = made.append
    yield make
    for data_key_id in made:
        try:
            call(client, "ScheduleDataKeyDeletion", DataKeyId=data_key_id, PendingWindowInDays=7)
        except kmstest.TencentCloudSDKException:
            pass


def meta(client, data_key_id):
    return call(client, "DescribeDataKey", DataKeyId=data_key_id).DataKeyMetadata


def plaintext(client, data_key_id):
    return unb64(call(client, "GetDataKeyPlaintext", DataKeyId=data_key_id).Plaintext)


def test_a_hosted_data_key_is_kept_and_read_back_on_every_node(clients, key, new_data_key):
    before = call(clients[0], "GetServiceStatus")
    assert before.IsAllowedDataKeyHosted is True and before.DataKeyLimit > 0
    dk_name = name("kept")
    resp = new_data_key(key, via=clients[1], DataKeyName=dk_name, Description="for the db",
                        Tags=[{"TagKey": "team", "TagValue": "storage"}],
                        EncryptionContext='{"app":"db"}')
    assert resp.KeyId == key and resp.TagCode == 0
    clear = unb64(resp.Plaintext)
    assert len(clear) == 32
    for i, c in enumerate(clients):
        m = meta(c, resp.DataKeyId)
        assert (m.DataKeyId, m.KeyId, m.DataKeyName, m.Description) == \
            (resp.DataKeyId, key, dk_name, "for the db"), node_name(i)
        assert (m.KeyState, m.NumberOfBytes, m.Origin, m.Owner, m.DeletionDate) == \
            ("Enabled", 32, "TENCENT_KMS", "user", 0), node_name(i)
        assert m.KeyName == kmstest.describe(c, key).Alias, node_name(i)
        assert m.ResourceId.endswith("/" + resp.DataKeyId), node_name(i)
        assert plaintext(c, resp.DataKeyId) == clear, node_name(i)
        # The ciphertext kept is the one GenerateDataKey returned; Decrypt opens it with its
        # context.
        blob = call(c, "GetDataKeyCiphertextBlob", DataKeyId=resp.DataKeyId).CiphertextBlob
        assert blob == resp.CiphertextBlob, node_name(i)
        assert kmstest.decrypt(c, blob, '{"app":"db"}') == (key, clear), node_name(i)
    after = call(clients[2], "GetServiceStatus")
    assert after.DataKeyUsedCount == before.DataKeyUsedCount + 1
    # A data key that is not hosted is not kept (no DataKeyId).
    plain = call(clients[0], "GenerateDataKey", KeyId=key, NumberOfBytes=16)
    assert plain.DataKeyId is None and len(unb64(plain.Plaintext)) == 16
    assert call(clients[0], "GetServiceStatus").DataKeyUsedCount == after.DataKeyUsedCount


def test_import_data_key_by_ciphertext_and_in_clear(clients, key, new_key, new_data_key):
    other = new_key(prefix="dk-other").KeyId
    gen = call(clients[0], "GenerateDataKey", KeyId=key, KeySpec="AES_128")
    by_blob = call(clients[1], "ImportDataKey", DataKeyName=name("imp1"), ImportType=1,
                   ImportKeyMaterial=gen.CiphertextBlob, KeyId=key)
    new_data_key.adopt(by_blob.DataKeyId)
    assert by_blob.KeyId == key
    secret = os.urandom(48)
    by_clear = call(clients[2], "ImportDataKey", DataKeyName=name("imp2"), ImportType=2,
                    ImportKeyMaterial=b64(secret), KeyId=other, Description="brought")
    new_data_key.adopt(by_clear.DataKeyId)
    assert by_clear.KeyId == other
    for i, c in enumerate(clients):
        m1, m2 = meta(c, by_blob.DataKeyId), meta(c, by_clear.DataKeyId)
        assert (m1.Origin, m1.NumberOfBytes, m1.KeyId) == ("EXTERNAL", 16, key), node_name(i)
        assert (m2.Origin, m2.NumberOfBytes, m2.KeyId) == ("EXTERNAL", 48, other), node_name(i)
        assert plaintext(c, by_blob.DataKeyId) == unb64(gen.Plaintext), node_name(i)
        assert plaintext(c, by_clear.DataKeyId) == secret, node_name(i)
    before = call(clients[0], "GetServiceStatus").DataKeyUsedCount
    bad = [
        # The blob is under `key`, not `other`.
        (dict(ImportType=1, ImportKeyMaterial=gen.CiphertextBlob, KeyId=other),
         "InvalidParameterValue.InvalidImportKeyMaterial"),
        (dict(ImportType=1, ImportKeyMaterial=b64(b"not a blob")),
         "InvalidParameterValue.InvalidImportKeyMaterial"),
        (dict(ImportType=1, ImportKeyMaterial="%%%"), "InvalidParameterValue.InvalidImportKeyMaterial"),
        (dict(ImportType=2, ImportKeyMaterial=b64(secret)), "MissingParameter"),
        (dict(ImportType=2, ImportKeyMaterial=b64(b"x" * 1025), KeyId=key),
         "InvalidParameterValue.InvalidImportKeyMaterial"),
        (dict(ImportType=3, ImportKeyMaterial=b64(secret), KeyId=key), "InvalidParameterValue"),
        (dict(ImportType=2, ImportKeyMaterial=b64(secret), KeyId="not-a-key-id"),
         "InvalidParameterValue.InvalidKeyId"),
        (dict(ImportType=2, ImportKeyMaterial=b64(secret), KeyId=str(uuid.uuid4())),
         "ResourceUnavailable.CmkNotFound"),
        (dict(ImportType=2, KeyId=key), "MissingParameter"),
    ]
    for i, c in enumerate(clients):
        for fields, code in bad:
            e = expect_error(c, "ImportDataKey", DataKeyName=name("bad"), **fields)
            assert e.get_code() == code, (node_name(i), fields, e.get_code())
    # A blob made with an EncryptionContext cannot be imported (ImportDataKey takes none).
    ctx = call(clients[0], "GenerateDataKey", KeyId=key, KeySpec="AES_256",
               EncryptionContext='{"a":"b"}')
    e = expect_error(clients[0], "ImportDataKey", DataKeyName=name("ctx"), ImportType=1,
                     ImportKeyMaterial=ctx.CiphertextBlob)
    assert e.get_code() == "InvalidParameterValue.InvalidImportKeyMaterial"
    assert call(clients[1], "GetServiceStatus").DataKeyUsedCount == before


def test_lifecycle_enable_disable_rename_and_deletion(clients, key, new_data_key):
    a = new_data_key(key).DataKeyId
    b = new_data_key(key, via=clients[1]).DataKeyId
    call(clients[0], "DisableDataKey", DataKeyId=a)
    for i, c in enumerate(clients):
        assert meta(c, a).KeyState == "Disabled", node_name(i)
        for action in ("GetDataKeyPlaintext", "GetDataKeyCiphertextBlob"):
            e = expect_error(c, action, DataKeyId=a)
            assert e.get_code() == "ResourceUnavailable.DataKeyDisabled", (node_name(i), action)
    call(clients[1], "EnableDataKey", DataKeyId=a)
    call(clients[2], "DisableDataKeys", DataKeyIds=[a, b])
    for i, c in enumerate(clients):
        metas = call(c, "DescribeDataKeys", DataKeyIds=[a, b, str(uuid.uuid4())]).DataKeyMetadatas
        assert sorted((m.DataKeyId, m.KeyState) for m in metas) == \
            sorted([(a, "Disabled"), (b, "Disabled")]), node_name(i)
    call(clients[0], "EnableDataKeys", DataKeyIds=[a, b])
    # A batch is all or nothing: an unknown id refuses it whole.
    e = expect_error(clients[0], "DisableDataKeys", DataKeyIds=[a, str(uuid.uuid4())])
    assert e.get_code() == "ResourceUnavailable.DataKeyNotFound"
    e = expect_error(clients[0], "DisableDataKeys", DataKeyIds=[a, a])
    assert e.get_code() == "InvalidParameterValue.DuplicatedDataKeyId"
    e = expect_error(clients[0], "DisableDataKeys", DataKeyIds=[str(uuid.uuid4()) for _ in range(101)])
    assert e.get_code() == "InvalidParameterValue"
    e = expect_error(clients[0], "EnableDataKeys", DataKeyIds=[])
    assert e.get_code() == "InvalidParameterValue"
    assert meta(clients[1], a).KeyState == "Enabled"

    # Names and descriptions.
    new_name = name("renamed")
    call(clients[1], "UpdateDataKeyName", DataKeyId=a, DataKeyName=new_name)
    call(clients[2], "UpdateDataKeyDescription", DataKeyId=a, Description="d" * 100)
    for i, c in enumerate(clients):
        m = meta(c, a)
        assert (m.DataKeyName, m.Description) == (new_name, "d" * 100), node_name(i)
    for action, fields, code in (
        ("UpdateDataKeyName", dict(DataKeyId=b, DataKeyName=new_name),
         "InvalidParameterValue.DataKeyNameAlreadyExists"),
        ("UpdateDataKeyName", dict(DataKeyId=b, DataKeyName="has space"),
         "InvalidParameterValue.InvalidDataKeyName"),
        ("UpdateDataKeyName", dict(DataKeyId=b, DataKeyName="n" * 61),
         "InvalidParameterValue.InvalidDataKeyName"),
        ("UpdateDataKeyDescription", dict(DataKeyId=b, Description="d" * 101), "InvalidParameterValue"),
        ("UpdateDataKeyName", dict(DataKeyId=b), "MissingParameter"),
    ):
        e = expect_error(clients[0], action, **fields)
        assert e.get_code() == code, (action, fields, e.get_code())
    e = expect_error(clients[0], "GenerateDataKey", KeyId=key, KeySpec="AES_256", IsHostedByKms=1,
                     DataKeyName=new_name)
    assert e.get_code() == "InvalidParameterValue.DataKeyNameAlreadyExists"

    # Deletion: 7 to 30 days; while pending the data key cannot be used or changed.
    e = expect_error(clients[0], "ScheduleDataKeyDeletion", DataKeyId=a, PendingWindowInDays=6)
    assert e.get_code() == "InvalidParameter.InvalidPendingWindowInDays"
    e = expect_error(clients[0], "CancelDataKeyDeletion", DataKeyId=a)
    assert e.get_code() == "ResourceUnavailable.DataKeyNotPendingDelete"
    used = call(clients[0], "GetServiceStatus").DataKeyUsedCount
    sched = call(clients[1], "ScheduleDataKeyDeletion", DataKeyId=a, PendingWindowInDays=7)
    assert sched.DataKeyId == a and sched.DeletionDate > 0
    assert call(clients[0], "GetServiceStatus").DataKeyUsedCount == used - 1
    for i, c in enumerate(clients):
        m = meta(c, a)
        assert (m.KeyState, m.DeletionDate) == ("PendingDelete", sched.DeletionDate), node_name(i)
        for action, fields in (("GetDataKeyPlaintext", {}), ("EnableDataKey", {}),
                               ("UpdateDataKeyName", {"DataKeyName": name()}),
                               ("ScheduleDataKeyDeletion", {"PendingWindowInDays": 7})):
            e = expect_error(c, action, DataKeyId=a, **fields)
            assert e.get_code() == "ResourceUnavailable.DataKeyPendingDelete", (node_name(i), action)
    cancel = call(clients[2], "CancelDataKeyDeletion", DataKeyId=a)
    assert cancel.DataKeyId == a
    for i, c in enumerate(clients):
        m = meta(c, a)
        assert (m.KeyState, m.DeletionDate) == ("Disabled", 0), node_name(i)


def test_listings_and_every_filter(clients, key, new_key, new_data_key):
    other = new_key(prefix="dk-list").KeyId
    tag = uuid.uuid4().hex[:8]
    a = new_data_key(other, NumberOfBytes=24, DataKeyName=name("lst-a"),
                     Tags=[{"TagKey": "t", "TagValue": tag}]).DataKeyId
    b = new_data_key(other, KeySpec="AES_128", DataKeyName=name("lst-b")).DataKeyId
    c_id = call(clients[0], "ImportDataKey", DataKeyName=name("lst-c"), ImportType=2,
                ImportKeyMaterial=b64(os.urandom(24)), KeyId=other).DataKeyId
    new_data_key.adopt(c_id)
    call(clients[0], "DisableDataKey", DataKeyId=b)
    for i, c in enumerate(clients):
        # Newest first: the three made last are on the first page.
        listed = call(c, "ListDataKeys", Limit=200)
        ids = [d.DataKeyId for d in listed.DataKeys or []]
        assert listed.TotalCount >= 3 and {a, b, c_id} <= set(ids), node_name(i)

        def detail(**f):
            resp = call(c, "ListDataKeyDetail", KeyId=other, Limit=200, **f)
            return [m.DataKeyId for m in resp.DataKeyMetadatas or []], resp.TotalCount

        ids, total = detail()
        assert sorted(ids) == sorted([a, b, c_id]) and total == 3, node_name(i)
        # Newest first by default, oldest first with OrderType 1.
        assert detail(OrderType=1)[0] == list(reversed(ids)), node_name(i)
        assert detail(KeyState=2)[0] == [b], node_name(i)
        assert sorted(detail(KeyState=1)[0]) == sorted([a, c_id]), node_name(i)
        assert detail(KeyState=3)[0] == [], node_name(i)
        assert detail(Origin="EXTERNAL")[0] == [c_id], node_name(i)
        assert sorted(detail(Origin="TENCENT_KMS")[0]) == sorted([a, b]), node_name(i)
        assert sorted(detail(DataKeyLen=24)[0]) == sorted([a, c_id]), node_name(i)
        assert detail(SearchKeyAlias="lst-b")[0] == [b], node_name(i)
        assert detail(SearchKeyAlias=a[:13])[0] == [a], node_name(i)
        assert detail(TagFilters=[{"TagKey": "t", "TagValue": [tag]}])[0] == [a], node_name(i)
        assert detail(Role=1) == ([], 0), node_name(i)
        page = call(c, "ListDataKeyDetail", KeyId=other, Offset=1, Limit=1)
        assert page.TotalCount == 3 and len(page.DataKeyMetadatas) == 1, node_name(i)
    for fields, code in (
        (dict(Limit=201), "InvalidParameterValue"),
        (dict(KeyState=4), "InvalidParameterValue"),
        (dict(OrderType=2), "InvalidParameterValue"),
        (dict(Origin="ELSEWHERE"), "InvalidParameterValue"),
        (dict(DataKeyLen=1025), "InvalidParameterValue"),
        (dict(KeyId="nope"), "InvalidParameterValue.InvalidKeyId"),
        (dict(HsmClusterId="cls-123"), "InvalidParameterValue.InvalidHsmClusterId"),
    ):
        e = expect_error(clients[1], "ListDataKeyDetail", **fields)
        assert e.get_code() == code, (fields, e.get_code())


def test_malformed_and_unknown_data_key_ids(clients):
    unknown = str(uuid.uuid4())
    for i, c in enumerate(clients):
        for action, extra in (("DescribeDataKey", {}), ("EnableDataKey", {}), ("DisableDataKey", {}),
                              ("GetDataKeyPlaintext", {}), ("GetDataKeyCiphertextBlob", {}),
                              ("UpdateDataKeyName", {"DataKeyName": name()}),
                              ("UpdateDataKeyDescription", {"Description": "x"}),
                              ("ScheduleDataKeyDeletion", {"PendingWindowInDays": 7}),
                              ("CancelDataKeyDeletion", {})):
            e = expect_error(c, action, DataKeyId="not-a-data-key-id", **extra)
            assert e.get_code() == "InvalidParameterValue.InvalidDataKeyId", (node_name(i), action)
            e = expect_error(c, action, DataKeyId=unknown, **extra)
            assert e.get_code() == "ResourceUnavailable.DataKeyNotFound", (node_name(i), action)
            e = expect_error(c, action, **extra)
            assert e.get_code() == "MissingParameter", (node_name(i), action)
        e = expect_error(c, "DescribeDataKeys", DataKeyIds=["bad"])
        assert e.get_code() == "InvalidParameterValue.InvalidDataKeyId", node_name(i)
        assert call(c, "DescribeDataKeys", DataKeyIds=[unknown]).DataKeyMetadatas == []


def test_generate_hosted_refusals_change_nothing(clients, key):
    before = call(clients[0], "GetServiceStatus").DataKeyUsedCount
    for i, c in enumerate(clients):
        for fields, code in (
            (dict(IsHostedByKms=1), "MissingParameter"),
            (dict(IsHostedByKms=1, DataKeyName="bad name"), "InvalidParameterValue.InvalidDataKeyName"),
            (dict(IsHostedByKms=1, DataKeyName=name(), Description="d" * 101), "InvalidParameterValue"),
            (dict(IsHostedByKms=2, DataKeyName=name()), "InvalidParameterValue"),
            (dict(IsHostedByKms=1, DataKeyName=name(), HsmClusterId="cls-1"),
             "InvalidParameterValue.InvalidHsmClusterId"),
            (dict(IsHostedByKms=1, DataKeyName=name(),
                  Tags=[{"TagKey": "k", "TagValue": "1"}, {"TagKey": "k", "TagValue": "2"}]),
             "InvalidParameterValue.TagKeysDuplicated"),
        ):
            e = expect_error(c, "GenerateDataKey", KeyId=key, KeySpec="AES_256", **fields)
            assert e.get_code() == code, (node_name(i), fields, e.get_code())
    assert call(clients[1], "GetServiceStatus").DataKeyUsedCount == before


def test_a_disabled_cmk_blocks_reading_its_data_keys(clients, new_key, new_data_key):
    # (Deleting the CMK deletes its data keys: covered by the registry's tests, since a pending
    # window takes at least 7 days.)
    cmk = new_key(prefix="dk-del").KeyId
    dk = new_data_key(cmk)
    call(clients[0], "DisableKey", KeyId=cmk)
    e = expect_error(clients[1], "GetDataKeyPlaintext", DataKeyId=dk.DataKeyId)
    assert e.get_code() == "ResourceUnavailable.CmkDisabled"
    call(clients[0], "EnableKey", KeyId=cmk)
    assert plaintext(clients[2], dk.DataKeyId) == unb64(dk.Plaintext)


# --- the plaintext encrypted to the caller's public key --------------------------------------------

def openssl(*args, stdin=None):
    out = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


@pytest.fixture(scope="module")
def recipients():
    """An RSA-2048 and an SM2 key pair made by openssl: {kind: (private.pem path, public PEM)}."""
    with tempfile.TemporaryDirectory() as d:
        out = {}
        for kind, gen in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                          ("sm2", ["-algorithm", "SM2"])):
            priv = os.path.join(d, kind + ".pem")
            openssl("genpkey", *gen, "-out", priv)
            out[kind] = (priv, openssl("pkey", "-in", priv, "-pubout").decode())
        yield out


def der_len(n):
    return bytes([n]) if n < 128 else bytes([0x81, n]) if n < 256 else bytes([0x82, n >> 8, n & 255])


def der_int(b):
    b = b.lstrip(b"\x00") or b"\x00"
    if b[0] & 0x80:
        b = b"\x00" + b
    return b"\x02" + der_len(len(b)) + b


def sm2_raw_to_asn1(raw):
    """04 ‖ x ‖ y ‖ C3 ‖ C2 (GB/T 32918.4 C1C3C2) as the ASN.1 SEQUENCE openssl reads."""
    assert raw[0] == 4
    x, y, c3, c2 = raw[1:33], raw[33:65], raw[65:97], raw[97:]
    body = der_int(x) + der_int(y) + b"\x04" + der_len(32) + c3 + b"\x04" + der_len(len(c2)) + c2
    return b"\x30" + der_len(len(body)) + body


RSA_OPTS = {
    "RSAES_PKCS1_V1_5": ["-pkeyopt", "rsa_padding_mode:pkcs1"],
    "RSAES_OAEP_SHA_1": ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha1"],
    "RSAES_OAEP_SHA_256": ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                           "-pkeyopt", "rsa_mgf1_md:sha256"],
}


def open_with_openssl(recipients, algorithm, text):
    sealed = unb64(text)
    kind = "sm2" if algorithm.startswith("SM2") else "rsa"
    priv = recipients[kind][0]
    if algorithm == "SM2":
        sealed = sm2_raw_to_asn1(sealed)
    with tempfile.NamedTemporaryFile() as f:
        f.write(sealed)
        f.flush()
        return openssl("pkeyutl", "-decrypt", "-inkey", priv, "-in", f.name, *RSA_OPTS.get(algorithm, []))


@pytest.mark.parametrize("algorithm", ["SM2", "SM2_C1C3C2_ASN1", "RSAES_PKCS1_V1_5",
                                       "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
def test_plaintexts_encrypted_to_the_callers_public_key(clients, key, new_data_key, recipients, algorithm):
    pem = recipients["sm2" if algorithm.startswith("SM2") else "rsa"][1]
    to = dict(EncryptionPublicKey=pem, EncryptionAlgorithm=algorithm)
    for i, c in enumerate(clients):
        # GenerateDataKey, not hosted and hosted.
        gen = call(c, "GenerateDataKey", KeyId=key, KeySpec="AES_256", **to)
        clear = open_with_openssl(recipients, algorithm, gen.Plaintext)
        assert len(clear) == 32, node_name(i)
        assert kmstest.decrypt(c, gen.CiphertextBlob) == (key, clear), node_name(i)
        # Decrypt.
        dec = call(c, "Decrypt", CiphertextBlob=gen.CiphertextBlob, **to)
        assert open_with_openssl(recipients, algorithm, dec.Plaintext) == clear, node_name(i)
        hosted = new_data_key(key, via=c, **to)
        clear = open_with_openssl(recipients, algorithm, hosted.Plaintext)
        assert plaintext(c, hosted.DataKeyId) == clear, node_name(i)
        # GetDataKeyPlaintext.
        got = call(c, "GetDataKeyPlaintext", DataKeyId=hosted.DataKeyId, **to)
        assert open_with_openssl(recipients, algorithm, got.Plaintext) == clear, node_name(i)


def test_public_key_refusals(clients, key, recipients):
    rsa_pem, sm2_pem = recipients["rsa"][1], recipients["sm2"][1]
    before = call(clients[0], "GetServiceStatus").DataKeyUsedCount
    blob = kmstest.encrypt(clients[0], key, b"secret").CiphertextBlob
    for i, c in enumerate(clients):
        for fields, code in (
            (dict(EncryptionPublicKey="not a key"), "InvalidParameterValue"),
            # The default algorithm is SM2: an RSA key does not fit it.
            (dict(EncryptionPublicKey=rsa_pem), "InvalidParameterValue"),
            (dict(EncryptionPublicKey=sm2_pem, EncryptionAlgorithm="RSAES_OAEP_SHA_256"),
             "InvalidParameterValue"),
            (dict(EncryptionPublicKey=sm2_pem, EncryptionAlgorithm="ROT13"), "InvalidParameterValue"),
        ):
            e = expect_error(c, "Decrypt", CiphertextBlob=blob, **fields)
            assert e.get_code() == code, (node_name(i), fields, e.get_code())
        # 1024 bytes do not fit an RSA-2048 key: refused before a hosted data key is stored.
        e = expect_error(c, "GenerateDataKey", KeyId=key, NumberOfBytes=1024, IsHostedByKms=1,
                         DataKeyName=name("big"), EncryptionPublicKey=rsa_pem,
                         EncryptionAlgorithm="RSAES_OAEP_SHA_256")
        assert e.get_code() == "FailedOperation.EncryptionError", node_name(i)
    assert call(clients[2], "GetServiceStatus").DataKeyUsedCount == before


# --- the quota ---------------------------------------------------------------------------------------

def test_data_key_quota_is_enforced_per_account(cluster):
    from test_accounts import admin
    account = admin("/admin/accounts", {"name": "sdk-dk-" + uuid.uuid4().hex[:8]})
    cred = admin("/admin/credentials", {"uin": account["uin"]})
    cs = [kmstest.make_client(ep, cluster.region, cred["secret_id"], cred["secret_key"])
          for ep in cluster.endpoints]
    status = call(cs[0], "GetServiceStatus")
    limit = status.DataKeyLimit
    assert status.DataKeyUsedCount == 0 and 0 < limit <= 100, limit
    cmk = call(cs[0], "CreateKey", Alias=kmstest.unique_alias("dkq")).KeyId
    made = [call(cs[i % len(cs)], "GenerateDataKey", KeyId=cmk, KeySpec="AES_128", IsHostedByKms=1,
                 DataKeyName="q%d" % i).DataKeyId for i in range(limit)]
    assert call(cs[1], "GetServiceStatus").DataKeyUsedCount == limit
    e = expect_error(cs[2], "GenerateDataKey", KeyId=cmk, KeySpec="AES_128", IsHostedByKms=1,
                     DataKeyName="over")
    assert e.get_code() == "LimitExceeded.DataKeyLimitExceeded"
    e = expect_error(cs[0], "ImportDataKey", DataKeyName="over", ImportType=2, KeyId=cmk,
                     ImportKeyMaterial=b64(b"k" * 16))
    assert e.get_code() == "LimitExceeded.DataKeyLimitExceeded"
    # One scheduled for deletion no longer counts; bringing it back must fit again.
    call(cs[0], "ScheduleDataKeyDeletion", DataKeyId=made[0], PendingWindowInDays=7)
    extra = call(cs[1], "GenerateDataKey", KeyId=cmk, KeySpec="AES_128", IsHostedByKms=1,
                 DataKeyName="room").DataKeyId
    e = expect_error(cs[2], "CancelDataKeyDeletion", DataKeyId=made[0])
    assert e.get_code() == "LimitExceeded.DataKeyLimitExceeded"
    call(cs[0], "ScheduleDataKeyDeletion", DataKeyId=extra, PendingWindowInDays=7)
    call(cs[2], "CancelDataKeyDeletion", DataKeyId=made[0])
    assert call(cs[0], "GetServiceStatus").DataKeyUsedCount == limit
