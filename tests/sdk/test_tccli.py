"""The unmodified tccli against every node, configured only by global flags (no profile).

Over plain HTTP: tccli has no option for it, so the scheme goes into --endpoint; requests then carry
`Host: http://127.0.0.1:PORT` and that exact value is signed (tencent-client-howto.md §2).
Over HTTPS: tccli's default scheme; it has no CA option and trusts only certifi's bundle, so the
tests give it a certifi whose bundle is certifi's own plus the cluster CA (a module first on
PYTHONPATH), which is what a user does by appending the CA to `python -m certifi`'s file.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

from kmstest import b64, describe, node_name, unb64, unique_alias

TCCLI = os.path.join(os.path.dirname(sys.executable), "tccli")  # the venv's tccli


@pytest.fixture
def tccli(cluster, tmp_path):
    """tccli(node_index, "Action", "--Param", "value", ..., secret_key=None, secret_id=None)
    -> CompletedProcess (the cluster's credential unless another is given)."""
    if not os.path.exists(TCCLI):
        pytest.fail("no tccli next to %s; run the tests through tests/sdk/run.sh" % sys.executable)
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("TENCENTCLOUD_", "TCCLI_"))}
    env["HOME"] = str(tmp_path)  # no ~/.tccli profile can leak in
    if cluster.scheme == "https":
        env["PYTHONPATH"] = certifi_with_ca(tmp_path, cluster.ca_bundle)

    def run(node, action, *args, secret_key=None, secret_id=None):
        endpoint = cluster.endpoints[node]
        if cluster.scheme == "http":
            endpoint = "http://" + endpoint
        cmd = [TCCLI, "kms", action, *args,
               "--secretId", secret_id or cluster.secret_id,
               "--secretKey", secret_key or cluster.secret_key,
               "--region", cluster.region,
               "--endpoint", endpoint]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    return run


def certifi_with_ca(tmp_path, ca_file):
    """A directory holding a `certifi` module whose where() is certifi's bundle plus ca_file."""
    import certifi
    shim = tmp_path / "certifi-shim"
    (shim / "certifi").mkdir(parents=True)
    bundle = shim / "cacert.pem"
    with open(certifi.where(), encoding="utf-8") as base, open(ca_file, encoding="utf-8") as ca:
        bundle.write_text(base.read() + "\n" + ca.read(), encoding="utf-8")
    (shim / "certifi" / "__init__.py").write_text(
        "def where():\n    return %r\n\n\ndef contents():\n"
        "    with open(where(), encoding='ascii') as f:\n        return f.read()\n" % str(bundle),
        encoding="utf-8")
    return str(shim)


def ok_json(proc):
    assert proc.returncode == 0, "tccli exited %d: %s" % (proc.returncode, proc.stderr)
    return json.loads(proc.stdout)


def test_tccli_get_regions_on_every_node(cluster, tccli):
    for i in range(len(cluster.endpoints)):
        out = ok_json(tccli(i, "GetRegions"))
        assert cluster.region in out["Regions"], node_name(i)
        assert out["RequestId"], node_name(i)


def test_tccli_create_encrypt_decrypt_on_every_node(cluster, clients, tccli, new_key):
    n = len(cluster.endpoints)
    for i in range(n):
        alias = unique_alias("tccli")
        created = ok_json(tccli(i, "CreateKey", "--Alias", alias, "--Description", "via tccli"))
        new_key.adopt(created["KeyId"])
        assert created["Alias"] == alias
        assert created["KeyState"] == "Enabled"
        assert created["KeyUsage"] == "ENCRYPT_DECRYPT"
        assert describe(clients[(i + 1) % n], created["KeyId"]).Alias == alias

        plaintext = ("hello from tccli on %s" % node_name(i)).encode()
        enc = ok_json(tccli(i, "Encrypt", "--KeyId", created["KeyId"], "--Plaintext", b64(plaintext)))
        assert enc["KeyId"] == created["KeyId"]

        for j in range(n):  # decrypt on every node, this one included
            dec = ok_json(tccli(j, "Decrypt", "--CiphertextBlob", enc["CiphertextBlob"]))
            assert dec["KeyId"] == created["KeyId"], node_name(j)
            assert unb64(dec["Plaintext"]) == plaintext, node_name(j)


def test_tccli_error_exits_255_with_the_code(cluster, tccli):
    for i in range(len(cluster.endpoints)):
        proc = tccli(i, "DescribeKey", "--KeyId", str(uuid.uuid4()))
        assert proc.returncode == 255, (node_name(i), proc.returncode, proc.stdout)
        assert "code:ResourceUnavailable.CmkNotFound" in proc.stderr, (node_name(i), proc.stderr)


def test_tccli_wrong_secret_key_exits_255(cluster, tccli):
    wrong = cluster.secret_key[:-1] + ("A" if cluster.secret_key[-1] != "A" else "B")
    for i in range(len(cluster.endpoints)):
        proc = tccli(i, "GetRegions", secret_key=wrong)
        assert proc.returncode == 255, (node_name(i), proc.returncode, proc.stdout)
        assert "code:AuthFailure.SignatureFailure" in proc.stderr, (node_name(i), proc.stderr)


def test_tccli_hosted_data_keys_and_post_quantum_on_every_node(cluster, tccli, new_key):
    """The actions added with hosted data keys and post-quantum keys, through tccli: a data key
    kept through one node reads back through every node, renamed, disabled and scheduled for
    deletion; a Kyber key encrypts through one node and decrypts through every node; a Dilithium
    signature verifies through every node."""
    n = len(cluster.endpoints)
    cmk = new_key(prefix="tccli-dk").KeyId
    kyber = new_key(prefix="tccli-pq", KeyUsage="ASYMMETRIC_Encrypt_Decrypt_Kyber_AES").KeyId
    dilithium = new_key(prefix="tccli-pq", KeyUsage="ASYMMETRIC_SIGN_VERIFY_DILITHIUM").KeyId
    for i in range(n):
        name = unique_alias("tccli-dk")
        gen = ok_json(tccli(i, "GenerateDataKey", "--KeyId", cmk, "--KeySpec", "AES_256",
                            "--IsHostedByKms", "1", "--DataKeyName", name))
        dk = gen["DataKeyId"]
        for j in range(n):
            got = ok_json(tccli(j, "GetDataKeyPlaintext", "--DataKeyId", dk))
            assert got["Plaintext"] == gen["Plaintext"], (node_name(i), node_name(j))
        ok_json(tccli(i, "UpdateDataKeyName", "--DataKeyId", dk, "--DataKeyName", name + "-r"))
        ok_json(tccli((i + 1) % n, "DisableDataKeys", "--DataKeyIds", json.dumps([dk])))
        meta = ok_json(tccli((i + 2) % n, "DescribeDataKey", "--DataKeyId", dk))["DataKeyMetadata"]
        assert (meta["DataKeyName"], meta["KeyState"]) == (name + "-r", "Disabled"), node_name(i)
        proc = tccli(i, "GetDataKeyPlaintext", "--DataKeyId", dk)
        assert proc.returncode == 255 and "ResourceUnavailable.DataKeyDisabled" in proc.stdout + proc.stderr
        sched = ok_json(tccli(i, "ScheduleDataKeyDeletion", "--DataKeyId", dk,
                              "--PendingWindowInDays", "7"))
        assert sched["DataKeyId"] == dk and sched["DeletionDate"] > 0

        enc = ok_json(tccli(i, "PostQuantumCryptoEncrypt", "--KeyId", kyber,
                            "--PlainText", b64(b"pq %d" % i)))
        sig = ok_json(tccli(i, "PostQuantumCryptoSign", "--KeyId", dilithium,
                            "--Message", b64(b"msg %d" % i)))
        for j in range(n):
            dec = ok_json(tccli(j, "PostQuantumCryptoDecrypt", "--CiphertextBlob", enc["CiphertextBlob"]))
            assert unb64(dec["PlainText"]) == b"pq %d" % i, (node_name(i), node_name(j))
            ver = ok_json(tccli(j, "PostQuantumCryptoVerify", "--KeyId", dilithium,
                                "--Message", b64(b"msg %d" % i), "--SignatureValue", sig["Signature"]))
            assert ver["SignatureValid"] is True, (node_name(i), node_name(j))
