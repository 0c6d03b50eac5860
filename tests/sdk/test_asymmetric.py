"""Asymmetric keys against the real openssl CLI (3.x): public keys from GetPublicKey are used by
openssl to encrypt for AsymmetricRsaDecrypt/AsymmetricSm2Decrypt and to verify the signatures of
SignByAsymmetricKey (RAW and DIGEST), SM2 with its default distinguishing ID. Every node is used.
"""

import base64
import hashlib
import os
import subprocess
import tempfile

import pytest

import kmstest
from kmstest import b64, call, expect_error, unb64

SM2_ID = b"1234567812345678"
# GB/T 32918 curve parameters for Z_A (a, b, xG, yG).
SM2_A = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
SM2_B = bytes.fromhex("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
SM2_XG = bytes.fromhex("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
SM2_YG = bytes.fromhex("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

SIGNING = [
    # (KeyUsage, Algorithm, openssl dgst options, digest function for DIGEST mode)
    ("ASYMMETRIC_SIGN_VERIFY_ECC", "ECC_P256_R1", ["-sha256"], hashlib.sha256),
    ("ASYMMETRIC_SIGN_VERIFY_ECDSA384", "ECC_P384_R1", ["-sha384"], hashlib.sha384),
    ("ASYMMETRIC_SIGN_VERIFY_SECP256K1", "ECC_SECP256K1", ["-sha256"], hashlib.sha256),
    ("ASYMMETRIC_SIGN_VERIFY_RSA_2048", "RSA_PKCS1_SHA_256", ["-sha256"], hashlib.sha256),
    ("ASYMMETRIC_SIGN_VERIFY_RSA_2048", "RSA_PSS_SHA_256",
     ["-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"], hashlib.sha256),
    ("ASYMMETRIC_SIGN_VERIFY_RSA_3072", "RSA_PSS_SHA_256",
     ["-sha256", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"], hashlib.sha256),
    ("ASYMMETRIC_SIGN_VERIFY_RSA_4096", "RSA_PKCS1_SHA_256", ["-sha256"], hashlib.sha256),
    ("ASYMMETRIC_SIGN_VERIFY_SM2", "SM2DSA", ["-sm3", "-sigopt", "distid:" + SM2_ID.decode()], None),
]


def openssl(*args, stdin=None):
    out = subprocess.run(["openssl", *args], input=stdin, capture_output=True)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory() as d:
        yield d


def write(d, name, data):
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def public_pem(client, key_id, d):
    resp = call(client, "GetPublicKey", KeyId=key_id)
    assert resp.KeyId == key_id
    der = unb64(resp.PublicKey)
    pem = resp.PublicKeyPem.encode()
    # The PEM and the DER are the same SubjectPublicKeyInfo, and openssl parses it.
    rc, out, err = openssl("pkey", "-pubin", "-in", write(d, "pub.pem", pem), "-outform", "DER")
    assert rc == 0, err
    assert out == der
    return os.path.join(d, "pub.pem"), der


def sm2_digest(spki_der, message):
    """e = SM3(Z_A || M) with the default distinguishing ID, for MessageType=DIGEST."""
    point = spki_der[-64:]  # uncompressed point X || Y at the end of the SPKI
    entl = (len(SM2_ID) * 8).to_bytes(2, "big")
    z = hashlib.new("sm3", entl + SM2_ID + SM2_A + SM2_B + SM2_XG + SM2_YG + point).digest()
    return hashlib.new("sm3", z + message).digest()


@pytest.mark.parametrize("usage,algorithm,dgst,digest_fn", SIGNING, ids=[f"{u}-{a}" for u, a, _, _ in SIGNING])
def test_signatures_verify_with_openssl_and_through_kms(clients, new_key, tmp, usage, algorithm, dgst, digest_fn):
    key = new_key("sig", KeyUsage=usage)
    assert key.KeyUsage == usage and key.KeyState == "Enabled"
    pem, der = public_pem(clients[1], key.KeyId, tmp)
    message = b"message signed by raftkms " + usage.encode()
    msg_path = write(tmp, "msg.bin", message)

    raw = unb64(call(clients[0], "SignByAsymmetricKey", KeyId=key.KeyId, Algorithm=algorithm,
                     Message=b64(message), MessageType="RAW").Signature)
    digest = sm2_digest(der, message) if digest_fn is None else digest_fn(message).digest()
    dig = unb64(call(clients[2], "SignByAsymmetricKey", KeyId=key.KeyId, Algorithm=algorithm,
                     Message=b64(digest), MessageType="DIGEST").Signature)
    for sig in (raw, dig):
        rc, out, err = openssl("dgst", *dgst, "-verify", pem, "-signature", write(tmp, "sig.bin", sig), msg_path)
        assert rc == 0, (out, err)
        # A tampered message does not verify in openssl ...
        rc, _, _ = openssl("dgst", *dgst, "-verify", pem, "-signature", write(tmp, "sig.bin", sig),
                           write(tmp, "other.bin", message + b"!"))
        assert rc != 0
    for i, c in enumerate(clients):
        ok = call(c, "VerifyByAsymmetricKey", KeyId=key.KeyId, Algorithm=algorithm, Message=b64(message),
                  SignatureValue=b64(raw), MessageType="RAW")
        assert ok.SignatureValid is True, kmstest.node_name(i)
        ok = call(c, "VerifyByAsymmetricKey", KeyId=key.KeyId, Algorithm=algorithm, Message=b64(digest),
                  SignatureValue=b64(dig), MessageType="DIGEST")
        assert ok.SignatureValid is True
    # ... nor through KMS: a tampered message or signature is reported invalid (not an error).
    bad = bytearray(raw)
    bad[len(bad) // 2] ^= 0x01
    for msg, sig in ((message + b"!", raw), (message, bytes(bad))):
        resp = call(clients[1], "VerifyByAsymmetricKey", KeyId=key.KeyId, Algorithm=algorithm,
                    Message=b64(msg), SignatureValue=b64(sig))
        assert resp.SignatureValid is False


def test_an_ecdsa_signature_with_high_s_made_outside_verifies(clients, new_key):
    """openssl may produce either S or n-S; both are valid ECDSA and must verify."""
    key = new_key("highs", KeyUsage="ASYMMETRIC_SIGN_VERIFY_ECC")
    message = b"high-s"
    sig = unb64(call(clients[0], "SignByAsymmetricKey", KeyId=key.KeyId, Algorithm="ECC_P256_R1",
                     Message=b64(message)).Signature)
    # DER SEQUENCE { INTEGER r, INTEGER s } -> replace s by n - s.
    assert sig[0] == 0x30
    rlen = sig[3]
    r = sig[4:4 + rlen]
    s = int.from_bytes(sig[6 + rlen:], "big")
    s2 = (P256_N - s).to_bytes(33, "big").lstrip(b"\0")
    if s2[0] & 0x80:
        s2 = b"\0" + s2
    body = bytes([0x02, len(r)]) + r + bytes([0x02, len(s2)]) + s2
    flipped = bytes([0x30, len(body)]) + body
    resp = call(clients[2], "VerifyByAsymmetricKey", KeyId=key.KeyId, Algorithm="ECC_P256_R1",
                Message=b64(message), SignatureValue=b64(flipped))
    assert resp.SignatureValid is True


@pytest.mark.parametrize("algorithm,pkeyopts", [
    ("RSAES_PKCS1_V1_5", ["rsa_padding_mode:pkcs1"]),
    ("RSAES_OAEP_SHA_1", ["rsa_padding_mode:oaep", "rsa_oaep_md:sha1", "rsa_mgf1_md:sha1"]),
    ("RSAES_OAEP_SHA_256", ["rsa_padding_mode:oaep", "rsa_oaep_md:sha256", "rsa_mgf1_md:sha256"]),
])
def test_rsa_decrypts_what_openssl_encrypted(clients, new_key, tmp, algorithm, pkeyopts):
    key = new_key("rsadec", KeyUsage="ASYMMETRIC_DECRYPT_RSA_2048")
    pem, _ = public_pem(clients[0], key.KeyId, tmp)
    plaintext = os.urandom(100)
    opts = [a for o in pkeyopts for a in ("-pkeyopt", o)]
    rc, ct, err = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem, *opts, stdin=plaintext)
    assert rc == 0, err
    for c in clients:
        resp = call(c, "AsymmetricRsaDecrypt", KeyId=key.KeyId, Ciphertext=b64(ct), Algorithm=algorithm)
        assert unb64(resp.Plaintext) == plaintext
    # The wrong OAEP hash or a corrupted ciphertext does not reveal the plaintext.
    bad = bytearray(ct)
    bad[10] ^= 0x01
    if algorithm == "RSAES_PKCS1_V1_5":
        # Implicit rejection: a synthetic message instead of an error, never the plaintext.
        resp = call(clients[1], "AsymmetricRsaDecrypt", KeyId=key.KeyId, Ciphertext=b64(bytes(bad)), Algorithm=algorithm)
        assert unb64(resp.Plaintext) != plaintext
    else:
        e = expect_error(clients[1], "AsymmetricRsaDecrypt", KeyId=key.KeyId, Ciphertext=b64(bytes(bad)), Algorithm=algorithm)
        assert e.get_code() == "FailedOperation.DecryptError"


def test_sm2_decrypts_what_openssl_encrypted(clients, new_key, tmp):
    key = new_key("sm2dec", KeyUsage="ASYMMETRIC_DECRYPT_SM2")
    pem, _ = public_pem(clients[2], key.KeyId, tmp)
    plaintext = b"SM2 plaintext from openssl"
    rc, ct, err = openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", pem, stdin=plaintext)
    assert rc == 0, err
    for c in clients:
        resp = call(c, "AsymmetricSm2Decrypt", KeyId=key.KeyId, Ciphertext=b64(ct))
        assert unb64(resp.Plaintext) == plaintext
    e = expect_error(clients[0], "AsymmetricSm2Decrypt", KeyId=key.KeyId, Ciphertext=b64(ct[:-1] + bytes([ct[-1] ^ 1])))
    assert e.get_code() == "FailedOperation.DecryptError"


def test_list_algorithms_reports_asymmetric_usages(client):
    resp = call(client, "ListAlgorithms")
    decrypt = {a.KeyUsage for a in resp.AsymmetricAlgorithms}
    sign = {a.KeyUsage for a in resp.AsymmetricSignVerifyAlgorithms}
    assert {"ASYMMETRIC_DECRYPT_RSA_2048", "ASYMMETRIC_DECRYPT_SM2"} <= decrypt
    assert {u for u, _, _, _ in SIGNING} <= sign


def test_asymmetric_misuse_gets_its_code_and_changes_nothing(clients, new_key):
    c = clients[0]
    sign_key = new_key("misuse", KeyUsage="ASYMMETRIC_SIGN_VERIFY_ECC")
    dec_key = new_key("misuse", KeyUsage="ASYMMETRIC_DECRYPT_SM2")
    sym_key = new_key("misuse")
    cases = [
        ("SignByAsymmetricKey", dict(KeyId=dec_key.KeyId, Algorithm="SM2DSA", Message=b64(b"m")), "UnsupportedOperation"),
        ("AsymmetricRsaDecrypt", dict(KeyId=sign_key.KeyId, Ciphertext=b64(b"x" * 256), Algorithm="RSAES_OAEP_SHA_256"), "UnsupportedOperation"),
        ("AsymmetricSm2Decrypt", dict(KeyId=sym_key.KeyId, Ciphertext=b64(b"x" * 100)), "UnsupportedOperation"),
        ("GetPublicKey", dict(KeyId=sym_key.KeyId), "UnsupportedOperation"),
        ("Encrypt", dict(KeyId=sign_key.KeyId, Plaintext=b64(b"p")), "UnsupportedOperation"),
        ("GenerateDataKey", dict(KeyId=dec_key.KeyId, KeySpec="AES_256"), "UnsupportedOperation"),
        ("SignByAsymmetricKey", dict(KeyId=sign_key.KeyId, Algorithm="RSA_PSS_SHA_256", Message=b64(b"m")), "InvalidParameterValue"),
        ("SignByAsymmetricKey", dict(KeyId=sign_key.KeyId, Algorithm="ECC_P256_R1", Message=b64(b"short"), MessageType="DIGEST"), "InvalidParameterValue"),
        ("SignByAsymmetricKey", dict(KeyId=sign_key.KeyId, Algorithm="ECC_P256_R1", Message=b64(b"m" * 4097)), "InvalidParameterValue"),
        ("AsymmetricRsaDecrypt", dict(KeyId=dec_key.KeyId, Ciphertext=b64(b"x"), Algorithm="RSAES_NONE"), "InvalidParameterValue"),
        ("EnableKeyRotation", dict(KeyId=sign_key.KeyId), "UnsupportedOperation.RotateNotSupported"),
        ("RotateKey", dict(KeyId=sign_key.KeyId), "UnsupportedOperation.RotateNotSupported"),
        ("CreateKey", dict(Alias=kmstest.unique_alias("bad"), KeyUsage="ASYMMETRIC_SIGN_VERIFY_ED448"), "InvalidParameterValue.InvalidKeyUsage"),
    ]
    before = [kmstest.metadata_dict(c, k.KeyId) for k in (sign_key, dec_key, sym_key)]
    for action, fields, code in cases:
        e = expect_error(clients[1], action, **fields)
        assert e.get_code() == code, (action, fields, e.get_code(), e.get_message())
    assert [kmstest.metadata_dict(c, k.KeyId) for k in (sign_key, dec_key, sym_key)] == before
    # A disabled asymmetric key neither signs nor exports its public key.
    call(c, "DisableKey", KeyId=sign_key.KeyId)
    for i, other in enumerate(clients):
        e = expect_error(other, "SignByAsymmetricKey", KeyId=sign_key.KeyId, Algorithm="ECC_P256_R1", Message=b64(b"m"))
        assert e.get_code() == "ResourceUnavailable.CmkDisabled", kmstest.node_name(i)
        e = expect_error(other, "GetPublicKey", KeyId=sign_key.KeyId)
        assert e.get_code() == "ResourceUnavailable.CmkDisabled"


def test_asymmetric_key_metadata(clients, new_key):
    key = new_key("meta", KeyUsage="ASYMMETRIC_SIGN_VERIFY_SM2")
    m = kmstest.describe(clients[2], key.KeyId)
    assert m.KeyUsage == "ASYMMETRIC_SIGN_VERIFY_SM2" and m.Type == 4 and m.Origin == "TENCENT_KMS"
    m = kmstest.describe(clients[1], new_key("meta", KeyUsage="ASYMMETRIC_DECRYPT_RSA_2048").KeyId)
    assert m.Type == 2
    listed = call(clients[0], "ListKeyDetail", KeyUsage="ASYMMETRIC_SIGN_VERIFY_SM2", Limit=200)
    assert key.KeyId in [k.KeyId for k in listed.KeyMetadatas]
    assert all(k.KeyUsage == "ASYMMETRIC_SIGN_VERIFY_SM2" for k in listed.KeyMetadatas)
