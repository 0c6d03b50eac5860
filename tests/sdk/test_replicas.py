"""Multi-region replica keys through the SDK: ReplicateKey is a raftkms extension, so it is called
with the SDK's CommonClient (as a user of the unmodified SDK would call any action it has no model
for); the replica is then used with the ordinary KmsClient in the other region."""

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.profile.client_profile import ClientProfile

import kmstest

OTHER_REGION = "ap-shanghai"  # served by the test cluster through a [[regions]] entry


def common_client(cluster, endpoint, region):
    cred = credential.Credential(cluster.secret_id, cluster.secret_key)
    http = kmstest.http_profile(endpoint)
    return CommonClient("kms", kmstest.API_VERSION, cred, region, ClientProfile(httpProfile=http))


def test_replicate_key_with_common_client_and_use_the_replica(cluster, client, clients, new_key):
    key = new_key("replica")
    blob = kmstest.encrypt(client, key.KeyId, b"multi-region").CiphertextBlob
    reply = common_client(cluster, cluster.endpoints[-1], cluster.region).call_json(
        "ReplicateKey",
        {"KeyId": key.KeyId, "DestinationRegions": [OTHER_REGION], "ReplicaAlias": key.Alias + "-sh"},
    )
    response = reply["Response"]
    assert response["KeyId"] == key.KeyId
    assert response["SourceRegion"] == cluster.region
    assert [r["Region"] for r in response["Replicas"]] == [OTHER_REGION]

    # The replica, through the ordinary SDK client in the other region, on every node.
    for endpoint in cluster.endpoints:
        sh = kmstest.make_client(endpoint, OTHER_REGION, cluster.secret_id, cluster.secret_key)
        meta = kmstest.describe(sh, key.KeyId)
        assert meta.IsSyncReplica == 1
        assert meta.SourceRegion == cluster.region
        assert meta.SyncStatus == 1
        assert meta.Alias == key.Alias + "-sh"
        assert kmstest.decrypt(sh, blob) == (key.KeyId, b"multi-region")
    # The primary reports itself as synchronised, not as a replica.
    primary = kmstest.describe(client, key.KeyId)
    assert primary.IsSyncReplica == 0 and primary.SyncStatus == 1

    # Rotating the replica is refused; rotating the primary reaches the replica.
    sh = kmstest.make_client(cluster.endpoints[0], OTHER_REGION, cluster.secret_id, cluster.secret_key)
    err = kmstest.expect_error(sh, "RotateKey", KeyId=key.KeyId)
    assert err.get_code() == "UnsupportedOperation.RotateNotSupported"
    assert cluster.region in err.get_message()
    kmstest.call(client, "RotateKey", KeyId=key.KeyId)
    new_blob = kmstest.encrypt(sh, key.KeyId, b"after rotation").CiphertextBlob
    assert kmstest.decrypt(client, new_blob) == (key.KeyId, b"after rotation")
    assert kmstest.decrypt(sh, blob) == (key.KeyId, b"multi-region")

    # Clean up the replica too (the fixture cleans the primary, which needs its replicas gone).
    kmstest.call(sh, "DisableKey", KeyId=key.KeyId)
    kmstest.call(sh, "ScheduleKeyDeletion", KeyId=key.KeyId, PendingWindowInDays=7)
