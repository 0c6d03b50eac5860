"""BYOK: material wrapped with the real openssl CLI under the public key from
GetParametersForImport, imported through a follower; every wrong step gets its code and changes
nothing."""

import os
import subprocess
import tempfile

import pytest

import kmstest
from kmstest import b64, call, expect_error, unb64

WRAPPING = {
    "RSAES_PKCS1_V1_5": ["rsa_padding_mode:pkcs1"],
    "RSAES_OAEP_SHA_1": ["rsa_padding_mode:oaep", "rsa_oaep_md:sha1", "rsa_mgf1_md:sha1"],
    "RSAES_OAEP_SHA_256": ["rsa_padding_mode:oaep", "rsa_oaep_md:sha256", "rsa_mgf1_md:sha256"],
}


def material_len(client):
    # SM4 (16 bytes) in mainland China regions, AES-256 (32 bytes) elsewhere.
    return 16 if call(client, "ListAlgorithms").SymmetricAlgorithms[0].Algorithm == "SM4" else 32


def wrap(public_key_b64, algorithm, material):
    with tempfile.TemporaryDirectory() as d:
        der = os.path.join(d, "pub.der")
        with open(der, "wb") as f:
            f.write(unb64(public_key_b64))
        opts = [a for o in WRAPPING[algorithm] for a in ("-pkeyopt", o)]
        out = subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", der, *opts],
                             input=material, capture_output=True)
        assert out.returncode == 0, out.stderr
        return out.stdout


def params(client, key_id, algorithm):
    p = call(client, "GetParametersForImport", KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    assert p.KeyId == key_id and p.ImportToken and p.PublicKey
    return p


@pytest.mark.parametrize("algorithm", sorted(WRAPPING))
def test_byok_end_to_end_through_a_follower(clients, new_key, algorithm):
    key = new_key("byok", Type=2)
    assert key.KeyState == "PendingImport"
    m = kmstest.describe(clients[0], key.KeyId)
    assert m.Origin == "EXTERNAL" and m.KeyState == "PendingImport"
    e = expect_error(clients[0], "Encrypt", KeyId=key.KeyId, Plaintext=b64(b"x"))
    assert e.get_code() == "ResourceUnavailable.CmkStateNotSupport"

    p = params(clients[1], key.KeyId, algorithm)
    import time
    assert abs(p.ParametersValidTo - (int(time.time()) + 86400)) < 120
    material = os.urandom(material_len(clients[0]))
    call(clients[2], "ImportKeyMaterial", KeyId=key.KeyId, ImportToken=p.ImportToken,
         EncryptedKeyMaterial=b64(wrap(p.PublicKey, algorithm, material)), ValidTo=0)
    for i, c in enumerate(clients):
        assert kmstest.describe(c, key.KeyId).KeyState == "Enabled", kmstest.node_name(i)
    blob = kmstest.encrypt(clients[0], key.KeyId, b"bring your own key").CiphertextBlob
    for c in clients:
        assert kmstest.decrypt(c, blob) == (key.KeyId, b"bring your own key")

    # Delete the material: the key waits for it again and cannot decrypt; identical material
    # restores it (and the old ciphertext), different material is refused.
    call(clients[1], "DeleteImportedKeyMaterial", KeyId=key.KeyId)
    assert kmstest.describe(clients[2], key.KeyId).KeyState == "PendingImport"
    e = expect_error(clients[0], "Decrypt", CiphertextBlob=blob)
    assert e.get_code() == "ResourceUnavailable.CmkStateNotSupport"
    p = params(clients[0], key.KeyId, algorithm)
    other = bytes(b ^ 0xFF for b in material)
    e = expect_error(clients[1], "ImportKeyMaterial", KeyId=key.KeyId, ImportToken=p.ImportToken,
                     EncryptedKeyMaterial=b64(wrap(p.PublicKey, algorithm, other)))
    assert e.get_code() == "InvalidParameterValue.MaterialNotMatch"
    assert kmstest.describe(clients[1], key.KeyId).KeyState == "PendingImport"
    call(clients[1], "ImportKeyMaterial", KeyId=key.KeyId, ImportToken=p.ImportToken,
         EncryptedKeyMaterial=b64(wrap(p.PublicKey, algorithm, material)))
    assert kmstest.decrypt(clients[2], blob) == (key.KeyId, b"bring your own key")


def test_every_wrong_import_step_gets_its_code_and_changes_nothing(clients, new_key):
    c = clients[0]
    key = new_key("byokerr", Type=2)
    other_key = new_key("byokerr", Type=2)
    material = os.urandom(material_len(c))
    first = params(c, key.KeyId, "RSAES_OAEP_SHA_256")
    second = params(clients[1], key.KeyId, "RSAES_OAEP_SHA_256")
    other = params(c, other_key.KeyId, "RSAES_OAEP_SHA_256")
    good = wrap(second.PublicKey, "RSAES_OAEP_SHA_256", material)
    before = kmstest.metadata_dict(c, key.KeyId)
    cases = [
        # A newer GetParametersForImport superseded the first token.
        (dict(ImportToken=first.ImportToken, EncryptedKeyMaterial=b64(wrap(first.PublicKey, "RSAES_OAEP_SHA_256", material))),
         "InvalidParameterValue"),
        # Another key's token.
        (dict(ImportToken=other.ImportToken, EncryptedKeyMaterial=b64(good)), "InvalidParameterValue"),
        # Wrapped for another key's parameters (wrong wrapping key).
        (dict(ImportToken=second.ImportToken, EncryptedKeyMaterial=b64(wrap(other.PublicKey, "RSAES_OAEP_SHA_256", material))),
         "InvalidParameter.DecryptMaterialError"),
        # Wrong wrapping algorithm.
        (dict(ImportToken=second.ImportToken, EncryptedKeyMaterial=b64(wrap(second.PublicKey, "RSAES_OAEP_SHA_1", material))),
         "InvalidParameter.DecryptMaterialError"),
        # Bad length.
        (dict(ImportToken=second.ImportToken, EncryptedKeyMaterial=b64(wrap(second.PublicKey, "RSAES_OAEP_SHA_256", material + b"x"))),
         "InvalidParameter.DecryptMaterialError"),
        # Garbage.
        (dict(ImportToken=second.ImportToken, EncryptedKeyMaterial=b64(os.urandom(256))), "InvalidParameter.DecryptMaterialError"),
        # ValidTo in the past.
        (dict(ImportToken=second.ImportToken, EncryptedKeyMaterial=b64(good), ValidTo=1000), "InvalidParameterValue"),
    ]
    for fields, code in cases:
        e = expect_error(clients[2], "ImportKeyMaterial", KeyId=key.KeyId, **fields)
        assert e.get_code() == code, (fields.keys(), e.get_code(), e.get_message())
        assert kmstest.metadata_dict(clients[1], key.KeyId) == before
    sym = new_key("byokerr")
    e = expect_error(c, "GetParametersForImport", KeyId=sym.KeyId, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                     WrappingKeySpec="RSA_2048")
    assert e.get_code() == "UnsupportedOperation.NotExternalCmk"
    e = expect_error(c, "DeleteImportedKeyMaterial", KeyId=sym.KeyId)
    assert e.get_code() == "UnsupportedOperation.NotExternalCmk"
    e = expect_error(c, "GetParametersForImport", KeyId=key.KeyId, WrappingAlgorithm="RSAES_OAEP_SHA_512",
                     WrappingKeySpec="RSA_2048")
    assert e.get_code() == "InvalidParameterValue"
    e = expect_error(c, "GetParametersForImport", KeyId=key.KeyId, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                     WrappingKeySpec="RSA_4096")
    assert e.get_code() == "InvalidParameterValue"
    e = expect_error(c, "RotateKey", KeyId=key.KeyId)
    assert e.get_code() == "UnsupportedOperation.ExternalCmkCanNotRotate"
    # The right step still works after all that, with a ValidTo in the future.
    import time
    call(clients[1], "ImportKeyMaterial", KeyId=key.KeyId, ImportToken=second.ImportToken,
         EncryptedKeyMaterial=b64(good), ValidTo=int(time.time()) + 30 * 86400)
    m = kmstest.describe(clients[2], key.KeyId)
    assert m.KeyState == "Enabled" and m.ValidTo > time.time()
