"""Fixtures for the Tencent Cloud SDK / tccli compatibility tests.

The cluster under test is described by environment variables (tests/sdk/run.sh exports them from a
dev.env file): KMS_ENDPOINTS (comma-separated http:// or https:// URLs, node 1 first), KMS_CA_BUNDLE
(the cluster CA, for https), KMS_REGION, KMS_SECRET_ID, KMS_SECRET_KEY. The cluster keeps its data between runs, so every test works on keys it creates itself
under unique aliases, and schedules them for deletion afterwards.
"""

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

import kmstest


@pytest.fixture(scope="session")
def cluster():
    c = kmstest.cluster_from_env()
    assert len(c.endpoints) >= 1
    kmstest.TRANSPORT.update(scheme=c.scheme, ca_bundle=c.ca_bundle)
    return c


@pytest.fixture(scope="session")
def clients(cluster):
    """One SDK client per node, in KMS_ENDPOINTS order (leader and followers alike)."""
    return [kmstest.make_client(ep, cluster.region, cluster.secret_id, cluster.secret_key)
            for ep in cluster.endpoints]


@pytest.fixture(scope="session")
def client(clients):
    """The client for node 1."""
    return clients[0]


@pytest.fixture
def new_key(client):
    """Factory: new_key(prefix="sdk", via=client, **CreateKey fields) -> CreateKeyResponse.

    Keys made through it are disabled and scheduled for deletion when the test ends (best effort:
    a test may already have left the key in a state where that is refused).
    """
    created = []

    def make(prefix="sdk", via=None, **fields):
        fields.setdefault("Alias", kmstest.unique_alias(prefix))
        resp = kmstest.call(via or client, "CreateKey", **fields)
        assert resp.KeyId, resp.to_json_string()
        created.append(resp.KeyId)
        return resp

    make.adopt = created.append  # for keys a test creates another way (tccli)
    yield make

    for key_id in created:
        for action, extra in (("CancelKeyArchive", {}), ("DisableKey", {}),
                              ("ScheduleKeyDeletion", {"PendingWindowInDays": 7})):
            try:
                kmstest.call(client, action, KeyId=key_id, **extra)
            except TencentCloudSDKException:
                pass
