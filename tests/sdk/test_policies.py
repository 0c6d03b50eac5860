"""Least privilege through the unmodified SDK and tccli: sub-users and roles with their own
credentials, CAM policies (allow, deny, wildcards, source-IP conditions), the exact refusal codes,
policy changes that bind every node as soon as they are acknowledged, and product-managed keys.

Identities and policies are managed through raftkms's admin endpoints (see test_accounts.py for the
admin credential); every test works in a brand-new account.
"""

import json
import urllib.error
import uuid

import pytest

import kmstest
from test_accounts import _opener, _request, admin
from test_tccli import ok_json, tccli  # noqa: F401  (the fixture, used by name)

ACTION_DENIED = "AuthFailure.UnauthorizedOperation"
RESOURCE_DENIED = "UnauthorizedOperation"


def admin_call(method, path, body=None):
    req = _request(path, body if body is not None else {})
    req.method = method
    if body is None:
        req.data = None
    with _opener().open(req, timeout=30) as resp:
        return json.loads(resp.read())


def admin_refusal(path, body):
    """POST that must be refused: returns (status, message)."""
    with pytest.raises(urllib.error.HTTPError) as e:
        admin(path, body)
    return e.value.code, json.loads(e.value.read())["error"]


def document(*statements):
    return json.dumps({"version": "2.0", "statement": list(statements)})


def key_resource(cluster, uin, key_id):
    return "qcs::kms:%s:uin/%d:key/%s" % (cluster.region, uin, key_id)


class Account:
    """A fresh account with its root clients (one per node) and helpers for its identities."""

    def __init__(self, cluster):
        self.cluster = cluster
        a = admin("/admin/accounts", {"name": "sdk-iam-" + uuid.uuid4().hex[:8]})
        self.uin = a["uin"]
        self.root_cred = admin("/admin/credentials", {"uin": self.uin})
        self.root = self.clients_for(self.root_cred)

    def clients_for(self, cred):
        return [kmstest.make_client(ep, self.cluster.region, cred["secret_id"], cred["secret_key"])
                for ep in self.cluster.endpoints]

    def identity(self, kind, name, service=None):
        body = {"kind": kind, "name": name}
        if service:
            body["service"] = service
        admin("/admin/accounts/%d/identities" % self.uin, body)
        cred = admin_call("POST", "/admin/accounts/%d/%ss/%s/credentials" % (self.uin, kind, name), {})
        return cred, self.clients_for(cred)

    def policy(self, name, *statements, replace=False):
        body = {"name": name, "document": document(*statements)}
        if replace:
            return admin_call("PUT", "/admin/accounts/%d/policies/%s" % (self.uin, name), body)
        return admin("/admin/accounts/%d/policies" % self.uin, body)

    def attach(self, kind, name, policy, attach=True):
        return admin("/admin/accounts/%d/attachments" % self.uin,
                     {"kind": kind, "name": name, "policy": policy, "attach": attach})

    def key(self):
        return kmstest.call(self.root[0], "CreateKey", Alias=kmstest.unique_alias("iam")).KeyId


@pytest.fixture
def account(cluster):
    return Account(cluster)


def code_of(client, action, **fields):
    return kmstest.expect_error(client, action, **fields).get_code()


def test_a_sub_user_without_a_policy_may_do_nothing(account):
    k = account.key()
    _, alice = account.identity("user", "alice")
    for i, c in enumerate(alice):
        for action, fields in (("Encrypt", {"KeyId": k, "Plaintext": kmstest.b64(b"x")}),
                               ("DescribeKey", {"KeyId": k}),
                               ("ListKeys", {}),
                               ("CreateKey", {"Alias": kmstest.unique_alias("no")}),
                               ("GenerateRandom", {"NumberOfBytes": 16})):
            assert code_of(c, action, **fields) == ACTION_DENIED, (kmstest.node_name(i), action)
    # The root identity of the account keeps every right.
    assert kmstest.describe(account.root[1], k).KeyState == "Enabled"


def test_a_policy_allows_exactly_its_actions_on_its_keys(cluster, account):
    k1, k2 = account.key(), account.key()
    _, alice = account.identity("user", "alice")
    account.policy("use-k1", {"effect": "allow",
                              "action": ["kms:Encrypt", "name/kms:Decrypt", "kms:Describe*"],
                              "resource": key_resource(cluster, account.uin, k1)})
    account.attach("user", "alice", "use-k1")
    for i, c in enumerate(alice):
        blob = kmstest.encrypt(c, k1, b"alice's secret").CiphertextBlob
        assert kmstest.decrypt(c, blob)[1] == b"alice's secret", kmstest.node_name(i)
        assert kmstest.describe(c, k1).KeyId == k1
        assert kmstest.call(c, "DescribeKeys", KeyIds=[k1]).KeyMetadatas[0].KeyId == k1
        # The same actions on another key: allowed somewhere, not here.
        assert code_of(c, "Encrypt", KeyId=k2, Plaintext=kmstest.b64(b"x")) == RESOURCE_DENIED
        assert code_of(c, "DescribeKeys", KeyIds=[k1, k2]) == RESOURCE_DENIED
        # Actions no policy names.
        assert code_of(c, "DisableKey", KeyId=k1) == ACTION_DENIED
        assert code_of(c, "CreateKey", Alias=kmstest.unique_alias("no")) == ACTION_DENIED
    # Another key's ciphertext is refused on its key, not decrypted.
    blob2 = kmstest.encrypt(account.root[0], k2, b"not for alice").CiphertextBlob
    assert code_of(alice[2], "Decrypt", CiphertextBlob=blob2) == RESOURCE_DENIED
    # Nothing alice was refused changed anything.
    assert kmstest.describe(account.root[0], k1).KeyState == "Enabled"


def test_deny_overrides_allow(cluster, account):
    k = account.key()
    _, bob = account.identity("user", "bob")
    account.policy("all", {"effect": "allow", "action": "kms:*", "resource": "*"})
    account.policy("no-decrypt", {"effect": "deny", "action": "kms:Decrypt",
                                  "resource": "qcs::kms:*:uin/%d:key/*" % account.uin})
    account.attach("user", "bob", "all")
    blob = kmstest.encrypt(bob[0], k, b"x").CiphertextBlob
    assert kmstest.decrypt(bob[1], blob)[1] == b"x"
    account.attach("user", "bob", "no-decrypt")
    for c in bob:
        assert code_of(c, "Decrypt", CiphertextBlob=blob) == RESOURCE_DENIED
        assert kmstest.encrypt(c, k, b"still allowed").KeyId == k


def test_a_policy_change_binds_every_node_at_once(cluster, account):
    """As with a revoked credential: once the change is acknowledged, no node allows the request,
    on the first try (linearizable requests read the policies after the read gate)."""
    k = account.key()
    _, carol = account.identity("user", "carol")
    account.policy("enc", {"effect": "allow", "action": "kms:Encrypt", "resource": "*"})
    account.attach("user", "carol", "enc")
    for c in carol:
        kmstest.encrypt(c, k, b"before")
    for round_ in range(3):
        # Replace the document: Encrypt no longer allowed.
        account.policy("enc", {"effect": "allow", "action": "kms:DescribeKey", "resource": "*"},
                       replace=True)
        for i, c in enumerate(carol):
            assert code_of(c, "Encrypt", KeyId=k, Plaintext=kmstest.b64(b"x")) == ACTION_DENIED, \
                (round_, kmstest.node_name(i))
        account.policy("enc", {"effect": "allow", "action": "kms:Encrypt", "resource": "*"},
                       replace=True)
        for c in carol:
            kmstest.encrypt(c, k, b"allowed again")
    # Detaching binds at once too, and so does deleting the user (its credential goes with it).
    account.attach("user", "carol", "enc", attach=False)
    for c in carol:
        assert code_of(c, "Encrypt", KeyId=k, Plaintext=kmstest.b64(b"x")) == ACTION_DENIED
    admin_call("DELETE", "/admin/accounts/%d/users/carol" % account.uin)
    for c in carol:
        assert code_of(c, "Encrypt", KeyId=k, Plaintext=kmstest.b64(b"x")) == "AuthFailure.SecretIdNotFound"


def test_source_ip_conditions(cluster, account):
    k = account.key()
    _, dave = account.identity("user", "dave")
    account.policy("from-loopback", {"effect": "allow", "action": "kms:Encrypt", "resource": "*",
                                     "condition": {"ip_equal": {"qcs:ip": "127.0.0.0/8"}}})
    account.policy("from-office", {"effect": "allow", "action": "kms:DescribeKey", "resource": "*",
                                   "condition": {"ip_equal": {"qcs:ip": ["10.0.0.0/8"]}}})
    account.attach("user", "dave", "from-loopback")
    account.attach("user", "dave", "from-office")
    assert kmstest.encrypt(dave[0], k, b"x").KeyId == k
    assert code_of(dave[1], "DescribeKey", KeyId=k) == RESOURCE_DENIED


def test_malformed_policies_are_refused_with_a_precise_message(account):
    for doc, want in (
        ("{not json", "not valid JSON"),
        (document({"effect": "allow", "action": "kms:Encrpyt", "resource": "*"}), "unknown action"),
        (document({"effect": "allow", "action": "kms:Encrypt", "resource": "qcs::kms:x:key/1"}),
         "six segments"),
        (document({"effect": "permit", "action": "kms:Encrypt", "resource": "*"}), "effect"),
    ):
        status, message = admin_refusal("/admin/accounts/%d/policies" % account.uin,
                                        {"name": "bad", "document": doc})
        assert status == 400 and want in message, (status, message)
    # A policy naming a key that does not exist is accepted (as CAM does) and matches nothing else.
    account.policy("ghost", {"effect": "allow", "action": "kms:*",
                             "resource": "qcs::kms:*:uin/%d:key/no-such-key" % account.uin})
    # Attaching a policy that does not exist is refused.
    account.identity("user", "erin")
    status, message = admin_refusal("/admin/accounts/%d/attachments" % account.uin,
                                    {"kind": "user", "name": "erin", "policy": "nope",
                                     "attach": True})
    assert status == 400 and "no such policy" in message, message


def test_product_managed_keys(cluster, account):
    _, cbs = account.identity("role", "cbs-service", service="cbs")
    account.policy("product", {"effect": "allow", "action": "kms:*", "resource": "*"})
    account.attach("role", "cbs-service", "product")
    made = kmstest.call(cbs[0], "CreateKey", Alias=kmstest.unique_alias("cbs")).KeyId
    own = account.key()
    for c in account.root:
        products = kmstest.call(c, "ListKeys", Role=1, Limit=200).Keys or []
        users = kmstest.call(c, "ListKeys", Limit=200).Keys or []
        assert made in [k.KeyId for k in products] and own not in [k.KeyId for k in products]
        assert own in [k.KeyId for k in users] and made not in [k.KeyId for k in users]
        detail = kmstest.call(c, "ListKeyDetail", Role=1, Limit=200).KeyMetadatas
        assert [m.KeyId for m in detail] == [made]
        assert kmstest.describe(c, made).Owner == "cbs"
        assert kmstest.describe(c, own).Owner == "user"
    # Queried and rotated, never disabled or scheduled for deletion, whoever asks.
    for c in (account.root[1], cbs[2]):
        assert code_of(c, "DisableKey", KeyId=made) == "UnsupportedOperation.NotUserCreatedCmk"
        assert code_of(c, "ScheduleKeyDeletion", KeyId=made, PendingWindowInDays=7) == \
            "UnsupportedOperation.NotUserCreatedCmk"
        assert code_of(c, "DisableKeys", KeyIds=[own, made]) == \
            "UnsupportedOperation.NotUserCreatedCmk"
    kmstest.call(account.root[0], "EnableKeyRotation", KeyId=made)
    assert kmstest.call(account.root[2], "GetKeyRotationStatus", KeyId=made).KeyRotationEnabled
    blob = kmstest.encrypt(account.root[0], made, b"for a product").CiphertextBlob
    assert kmstest.decrypt(cbs[1], blob)[1] == b"for a product"
    assert kmstest.describe(account.root[0], own).KeyState == "Enabled"  # DisableKeys was all-or-nothing


def test_tccli_as_a_sub_user(cluster, account, tccli):  # noqa: F811
    k = account.key()
    cred, _ = account.identity("user", "frank")
    account.policy("enc-only", {"effect": "allow", "action": "kms:Encrypt",
                                "resource": key_resource(cluster, account.uin, k)})
    account.attach("user", "frank", "enc-only")
    for i in range(len(cluster.endpoints)):
        out = ok_json(tccli(i, "Encrypt", "--KeyId", k, "--Plaintext", kmstest.b64(b"via tccli"),
                            secret_id=cred["secret_id"], secret_key=cred["secret_key"]))
        assert out["KeyId"] == k
        proc = tccli(i, "DisableKey", "--KeyId", k,
                     secret_id=cred["secret_id"], secret_key=cred["secret_key"])
        assert proc.returncode == 255 and "code:%s" % ACTION_DENIED in proc.stderr, proc.stderr


def test_hosted_data_keys_are_resources_and_import_needs_decrypt(cluster, account):
    """A data key is `datakey/<DataKeyId>`; ImportDataKey of a CiphertextBlob opens it, so it
    needs kms:Decrypt on the blob's key too (else ImportDataKey + GetDataKeyPlaintext would
    decrypt for a caller denied Decrypt)."""
    k = account.key()
    root = account.root[0]
    blob = kmstest.encrypt(root, k, b"sixteen byte key").CiphertextBlob
    mine = kmstest.call(root, "GenerateDataKey", KeyId=k, KeySpec="AES_256", IsHostedByKms=1,
                        DataKeyName="iam-" + uuid.uuid4().hex[:8]).DataKeyId
    other = kmstest.call(root, "GenerateDataKey", KeyId=k, KeySpec="AES_256", IsHostedByKms=1,
                         DataKeyName="iam-" + uuid.uuid4().hex[:8]).DataKeyId
    _, bob = account.identity("user", "bob")
    datakey = "qcs::kms:%s:uin/%d:datakey/%s" % (cluster.region, account.uin, mine)
    account.policy("data-keys",
                   {"effect": "allow", "action": ["kms:ImportDataKey"],
                    "resource": [key_resource(cluster, account.uin, k)]},
                   {"effect": "allow", "action": ["kms:GetDataKeyPlaintext", "kms:DescribeDataKey"],
                    "resource": [datakey]})
    account.attach("user", "bob", "data-keys")
    for i, c in enumerate(bob):
        # Only the data key the policy names.
        assert kmstest.call(c, "DescribeDataKey", DataKeyId=mine).DataKeyMetadata.DataKeyId == mine
        kmstest.call(c, "GetDataKeyPlaintext", DataKeyId=mine)
        assert code_of(c, "GetDataKeyPlaintext", DataKeyId=other) == RESOURCE_DENIED, kmstest.node_name(i)
        # Importing in clear needs only ImportDataKey on the key...
        kmstest.call(c, "ImportDataKey", DataKeyName="iam-" + uuid.uuid4().hex[:8], ImportType=2,
                     ImportKeyMaterial=kmstest.b64(b"k" * 16), KeyId=k)
        # ...but opening a ciphertext of it needs Decrypt, which bob is not allowed.
        assert code_of(c, "ImportDataKey", DataKeyName="iam-" + uuid.uuid4().hex[:8], ImportType=1,
                       ImportKeyMaterial=blob) == ACTION_DENIED, kmstest.node_name(i)
    account.policy("decrypt", {"effect": "allow", "action": ["kms:Decrypt"],
                               "resource": [key_resource(cluster, account.uin, k)]})
    account.attach("user", "bob", "decrypt")
    made = kmstest.call(bob[1], "ImportDataKey", DataKeyName="iam-" + uuid.uuid4().hex[:8],
                        ImportType=1, ImportKeyMaterial=blob)
    assert made.KeyId == k
