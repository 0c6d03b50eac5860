"""Post-quantum keys through the unmodified SDK, on every node: CreateKey with
ASYMMETRIC_Encrypt_Decrypt_Kyber_AES (ML-KEM-768) and ASYMMETRIC_SIGN_VERIFY_DILITHIUM
(ML-DSA-65), PostQuantumCryptoEncrypt/Decrypt/Sign/Verify, GetPublicKey (a SubjectPublicKeyInfo
with the NIST OIDs) and ListAlgorithms; a key of another usage, a tampered ciphertext, a bad
signature and bad parameters answer Tencent's codes."""

import base64

import pytest

from kmstest import b64, call, expect_error, node_name, unb64

KYBER = "ASYMMETRIC_Encrypt_Decrypt_Kyber_AES"
DILITHIUM = "ASYMMETRIC_SIGN_VERIFY_DILITHIUM"
# DER of the AlgorithmIdentifier OIDs (FIPS 203/204, NIST CSOR): id-alg-ml-kem-768 and
# id-ml-dsa-65.
ML_KEM_768_OID = bytes.fromhex("0609608648016503040402")
ML_DSA_65_OID = bytes.fromhex("0609608648016503040312")


@pytest.fixture
def kyber(new_key):
    return new_key(prefix="pq-kem", KeyUsage=KYBER).KeyId


@pytest.fixture
def dilithium(new_key):
    return new_key(prefix="pq-dsa", KeyUsage=DILITHIUM).KeyId


def test_encrypt_and_decrypt_on_every_node(clients, kyber):
    spki = base64.b64decode(call(clients[0], "GetPublicKey", KeyId=kyber).PublicKey)
    assert ML_KEM_768_OID in spki[:32] and len(spki) > 1184
    for i, c in enumerate(clients):
        assert call(c, "DescribeKey", KeyId=kyber).KeyMetadata.KeyUsage == KYBER, node_name(i)
        enc = call(c, "PostQuantumCryptoEncrypt", KeyId=kyber, PlainText=b64(b"quantum-safe %d" % i))
        assert enc.KeyId == kyber
        for j, d in enumerate(clients):
            dec = call(d, "PostQuantumCryptoDecrypt", CiphertextBlob=enc.CiphertextBlob)
            assert (dec.KeyId, unb64(dec.PlainText)) == (kyber, b"quantum-safe %d" % i), (i, j)
    # Two encryptions of one plaintext differ (a fresh encapsulation each time).
    a = call(clients[0], "PostQuantumCryptoEncrypt", KeyId=kyber, PlainText=b64(b"x")).CiphertextBlob
    b = call(clients[0], "PostQuantumCryptoEncrypt", KeyId=kyber, PlainText=b64(b"x")).CiphertextBlob
    assert a != b


def test_sign_and_verify_on_every_node(clients, dilithium):
    spki = base64.b64decode(call(clients[1], "GetPublicKey", KeyId=dilithium).PublicKey)
    assert ML_DSA_65_OID in spki[:32] and len(spki) > 1952
    for i, c in enumerate(clients):
        sig = call(c, "PostQuantumCryptoSign", KeyId=dilithium, Message=b64(b"contract %d" % i)).Signature
        assert len(unb64(sig)) == 3309
        for j, d in enumerate(clients):
            ok = call(d, "PostQuantumCryptoVerify", KeyId=dilithium, Message=b64(b"contract %d" % i),
                      SignatureValue=sig)
            assert ok.SignatureValid is True, (i, j)
        bad = call(c, "PostQuantumCryptoVerify", KeyId=dilithium, Message=b64(b"contract X"),
                   SignatureValue=sig)
        assert bad.SignatureValid is False, node_name(i)
        short = call(c, "PostQuantumCryptoVerify", KeyId=dilithium, Message=b64(b"contract %d" % i),
                     SignatureValue=b64(unb64(sig)[:100]))
        assert short.SignatureValid is False, node_name(i)


def test_list_algorithms_names_the_post_quantum_usages(clients):
    algs = call(clients[2], "ListAlgorithms")
    assert {(a.KeyUsage, a.Algorithm) for a in algs.AsymmetricAlgorithms} >= {(KYBER, "Kyber_AES")}
    assert {(a.KeyUsage, a.Algorithm) for a in algs.AsymmetricSignVerifyAlgorithms} >= \
        {(DILITHIUM, "Dilithium")}


def test_refusals(clients, new_key, kyber, dilithium):
    sym = new_key(prefix="pq-sym").KeyId
    blob = call(clients[0], "PostQuantumCryptoEncrypt", KeyId=kyber, PlainText=b64(b"p")).CiphertextBlob
    raw = bytearray(unb64(blob))
    raw[-1] ^= 1
    tampered = b64(bytes(raw))
    sym_blob = call(clients[0], "Encrypt", KeyId=sym, Plaintext=b64(b"p")).CiphertextBlob
    for i, c in enumerate(clients):
        for action, fields, code in (
            ("PostQuantumCryptoEncrypt", dict(KeyId=sym, PlainText=b64(b"p")), "UnsupportedOperation"),
            ("PostQuantumCryptoEncrypt", dict(KeyId=dilithium, PlainText=b64(b"p")), "UnsupportedOperation"),
            ("PostQuantumCryptoEncrypt", dict(KeyId=kyber, PlainText=b64(b"x" * 4097)),
             "InvalidParameterValue.InvalidPlaintext"),
            ("PostQuantumCryptoEncrypt", dict(KeyId=kyber, PlainText=""), "InvalidParameterValue.InvalidPlaintext"),
            ("PostQuantumCryptoEncrypt", dict(KeyId="nope", PlainText=b64(b"p")), "InvalidParameterValue.InvalidKeyId"),
            ("PostQuantumCryptoEncrypt", dict(KeyId=kyber), "MissingParameter"),
            ("PostQuantumCryptoDecrypt", dict(CiphertextBlob=tampered), "InvalidParameterValue.InvalidCiphertext"),
            ("PostQuantumCryptoDecrypt", dict(CiphertextBlob=b64(b"short")), "InvalidParameterValue.InvalidCiphertext"),
            # A symmetric key's ciphertext is not a post-quantum one.
            ("PostQuantumCryptoDecrypt", dict(CiphertextBlob=sym_blob), "InvalidParameterValue.InvalidCiphertext"),
            ("PostQuantumCryptoSign", dict(KeyId=kyber, Message=b64(b"m")), "UnsupportedOperation"),
            ("PostQuantumCryptoSign", dict(KeyId=dilithium, Message=b64(b"m" * 4097)), "InvalidParameterValue"),
            ("PostQuantumCryptoSign", dict(KeyId=dilithium, Message="%%%"), "InvalidParameterValue"),
            ("PostQuantumCryptoVerify", dict(KeyId=dilithium, Message=b64(b"m")), "MissingParameter"),
            # The classic actions refuse post-quantum keys.
            ("Encrypt", dict(KeyId=kyber, Plaintext=b64(b"p")), "UnsupportedOperation"),
            ("SignByAsymmetricKey", dict(KeyId=dilithium, Message=b64(b"m"), Algorithm="SM2DSA"),
             "InvalidParameterValue"),
        ):
            e = expect_error(c, action, **fields)
            assert e.get_code() == code, (node_name(i), action, fields, e.get_code())
    # A disabled key refuses; enabled again it works.
    call(clients[0], "DisableKey", KeyId=kyber)
    e = expect_error(clients[1], "PostQuantumCryptoDecrypt", CiphertextBlob=blob)
    assert e.get_code() == "ResourceUnavailable.CmkDisabled"
    call(clients[2], "EnableKey", KeyId=kyber)
    assert unb64(call(clients[1], "PostQuantumCryptoDecrypt", CiphertextBlob=blob).PlainText) == b"p"
