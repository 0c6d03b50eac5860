"""Tags as Tencent models them: given on CreateKey and GenerateDataKey (hosted), within Tencent's
tag rules (at most 50, keys 1-255 characters, values up to 127, letters, digits, spaces and
+-=._:/@, keys starting qcloud/tencent/project reserved), filterable in ListKeyDetail and
ListDataKeyDetail, and read and changed afterwards through the raftkms extensions
GetResourceTags and ModifyResourceTags (called with the SDK's CommonClient, as any action it has
no model for), on every node."""

import uuid

from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

import kmstest
from kmstest import call, expect_error, node_name
from test_replicas import common_client


def tags(*pairs):
    return [{"TagKey": k, "TagValue": v} for k, v in pairs]


def common(cluster, i):
    return common_client(cluster, cluster.endpoints[i], cluster.region)


def extension(cluster, i, action, params):
    return common(cluster, i).call_json(action, params)["Response"]


def extension_error(cluster, i, action, params):
    try:
        reply = common(cluster, i).call_json(action, params)
    except TencentCloudSDKException as e:
        return e.get_code()
    raise AssertionError("%s succeeded: %s" % (action, reply))


def listed(client, team):
    resp = call(client, "ListKeyDetail", Limit=200, KeyUsage="ALL",
                TagFilters=[{"TagKey": "team", "TagValue": [team]}])
    return [m.KeyId for m in resp.KeyMetadatas or []]


def test_tags_are_kept_filtered_and_changed_on_every_node(cluster, clients, new_key):
    team = "t" + uuid.uuid4().hex[:8]
    key = new_key(prefix="tags", Tags=tags(("team", team), ("env", "prod"))).KeyId
    for i, c in enumerate(clients):
        assert listed(c, team) == [key], node_name(i)
        got = extension(cluster, i, "GetResourceTags", {"KeyId": key})["Tags"]
        assert got == tags(("team", team), ("env", "prod")), node_name(i)
    # Change through one node: overwrite env, add owner, remove team; every node sees it.
    after = extension(cluster, 1, "ModifyResourceTags",
                      {"KeyId": key, "ReplaceTags": tags(("env", "staging"), ("owner", "ops")),
                       "DeleteTags": [{"TagKey": "team"}]})["Tags"]
    assert after == tags(("env", "staging"), ("owner", "ops"))
    for i, c in enumerate(clients):
        assert listed(c, team) == [], node_name(i)
        assert extension(cluster, i, "GetResourceTags", {"KeyId": key})["Tags"] == after, node_name(i)

    # A hosted data key the same way.
    dk = call(clients[0], "GenerateDataKey", KeyId=key, KeySpec="AES_128", IsHostedByKms=1,
              DataKeyName="tags-" + uuid.uuid4().hex[:8], Tags=tags(("team", team))).DataKeyId
    try:
        for i, c in enumerate(clients):
            found = call(c, "ListDataKeyDetail", Limit=200,
                         TagFilters=[{"TagKey": "team", "TagValue": [team]}]).DataKeyMetadatas
            assert [m.DataKeyId for m in found] == [dk], node_name(i)
        after = extension(cluster, 2, "ModifyResourceTags",
                          {"DataKeyId": dk, "ReplaceTags": tags(("team", team + "x"))})["Tags"]
        assert after == tags(("team", team + "x"))
        assert extension(cluster, 0, "GetResourceTags", {"DataKeyId": dk})["Tags"] == after
    finally:
        call(clients[0], "ScheduleDataKeyDeletion", DataKeyId=dk, PendingWindowInDays=7)


def test_tag_rules_and_refusals_change_nothing(cluster, clients, new_key):
    key = new_key(prefix="tags-bad", Tags=tags(("team", "a"))).KeyId
    fifty_one = tags(*[("k%d" % n, "v") for n in range(51)])
    for i, c in enumerate(clients):
        for bad, code in ((tags(("qcloud:x", "v")), "InvalidParameterValue"),
                          (tags(("Tencent-team", "v")), "InvalidParameterValue"),
                          (tags(("k" * 256, "v")), "InvalidParameterValue"),
                          (tags(("k", "v" * 128)), "InvalidParameterValue"),
                          (tags(("has!bang", "v")), "InvalidParameterValue"),
                          (fifty_one, "InvalidParameterValue"),
                          (tags(("k", "1"), ("k", "2")), "InvalidParameterValue.TagKeysDuplicated")):
            e = expect_error(c, "CreateKey", Alias=kmstest.unique_alias("tags-bad"), Tags=bad)
            assert e.get_code() == code, (node_name(i), bad[:2], e.get_code())
            assert extension_error(cluster, i, "ModifyResourceTags",
                                   {"KeyId": key, "ReplaceTags": bad}) == code, node_name(i)
        for params, code in (
            ({"KeyId": key}, "MissingParameter"),
            ({"ReplaceTags": tags(("a", "b"))}, "MissingParameter"),
            ({"KeyId": key, "DataKeyId": str(uuid.uuid4()), "ReplaceTags": tags(("a", "b"))},
             "InvalidParameter"),
            ({"KeyId": "nope", "ReplaceTags": tags(("a", "b"))}, "InvalidParameterValue.InvalidKeyId"),
            ({"KeyId": str(uuid.uuid4()), "ReplaceTags": tags(("a", "b"))},
             "ResourceUnavailable.CmkNotFound"),
            ({"DataKeyId": str(uuid.uuid4()), "ReplaceTags": tags(("a", "b"))},
             "ResourceUnavailable.DataKeyNotFound"),
            ({"KeyId": key, "ReplaceTags": tags(("a", "b")), "DeleteTags": [{"TagKey": "a"}]},
             "InvalidParameterValue"),
        ):
            assert extension_error(cluster, i, "ModifyResourceTags", params) == code, (node_name(i), params)
        # Fifty tags in all are allowed; the fifty-first is not.
        assert extension_error(cluster, i, "ModifyResourceTags",
                               {"KeyId": key, "ReplaceTags": tags(*[("k%d" % n, "v") for n in range(50)])}) \
            == "InvalidParameterValue", node_name(i)
    # Nothing above changed the key's tags.
    assert extension(cluster, 1, "GetResourceTags", {"KeyId": key})["Tags"] == tags(("team", "a"))
