"""The console's DR and cluster views under faults, on a two-region cluster of its own
(tests/console_failover.rs sets it up as `raftkms dev` would and runs only this file, through
RAFTKMS_SDK_TESTS): a DR drill started from the console, then the leader killed while the cluster
view watches, then another node frozen so that the watching node has no quorum left and its view
still answers. Not named test_*.py, so the shared suite's cluster never runs it.
"""

import os
import signal
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

from test_console import browser, shot, sign_in, wait  # noqa: F401 (browser is a fixture)
from test_replicas import common_client


def pids():
    return dict(p.split(":") for p in os.environ["RAFTKMS_NODE_PIDS"].split(","))


def test_a_drill_started_in_the_console_reports_rto_and_rpo_zero(cluster, browser):
    d = browser
    sign_in(d, cluster.endpoints[0], cluster.secret_id, cluster.secret_key, "#/dr")
    wait(d, EC.presence_of_element_located((By.ID, "drill-form")))
    # Only a region whose loss leaves a quorum can be cut: Shanghai (one voter of three).
    options = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#drill-region option")]
    assert options == ["ap-shanghai"], options
    before = {r.get_attribute("data-drill") for r in d.find_elements(By.CSS_SELECTOR, "#drills tbody tr")}
    d.find_element(By.ID, "drill-button").click()
    wait(d, EC.alert_is_present()).accept()
    # While it runs, every node's DR view says so (node 2's here), and a second drill is refused.
    wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "#drill-button[disabled]")))
    other = common_client(cluster, cluster.endpoints[1], cluster.region)
    assert other.call_json("DescribeDrillReports", {})["Response"]["Running"] is True
    with pytest.raises(TencentCloudSDKException) as e:
        other.call_json("StartDrill", {"Region": "ap-shanghai"})
    assert e.value.get_code() == "UnsupportedOperation" and "still running" in e.value.get_message()
    # The view says a drill runs, then shows its report (it looks again every 3 s).
    wait(d, lambda drv: drv.find_element(By.ID, "drill-button").get_attribute("disabled") is not None
         or [r for r in drv.find_elements(By.CSS_SELECTOR, "#drills tbody tr") if r.get_attribute("data-drill") not in before])
    # The view re-renders while the drill runs: each look reads the new row whole, at once.
    last_look = [time.time()]

    def new_report(drv):
        for r in drv.find_elements(By.CSS_SELECTOR, "#drills tbody tr"):
            if r.get_attribute("data-drill") not in before:
                return (r.get_attribute("data-passed"), [td.text for td in r.find_elements(By.TAG_NAME, "td")])
        # Not running (any more), or the view showed an error during the outage: look again,
        # every 3 s (a new look drops a load still under way).
        if not drv.find_elements(By.CSS_SELECTOR, "#drill-button[disabled]") and time.time() - last_look[0] > 3:
            last_look[0] = time.time()
            drv.execute_script("route(location.hash)")
        return False
    passed, cells = wait(d, new_report, 180)
    assert passed == "true", cells
    assert cells[1] == "ap-shanghai" and cells[2].startswith("3"), cells
    assert cells[3].endswith(" ms") and cells[4].startswith("0 lost"), cells
    shot(d, "dr")
    d.find_element(By.ID, "signout").click()


def test_the_cluster_view_follows_a_new_leader(cluster, browser):
    d = browser
    leader_of = lambda drv: drv.find_element(By.ID, "cluster-leader").get_attribute("data-leader")
    sign_in(d, cluster.endpoints[0], cluster.secret_id, cluster.secret_key, "#/cluster")
    leader = wait(d, leader_of)
    # Watch from a node that is not the leader.
    watcher = next(i for i in range(len(cluster.endpoints)) if str(i + 1) != leader)
    if watcher != 0:
        d.find_element(By.ID, "signout").click()
        sign_in(d, cluster.endpoints[watcher], cluster.secret_id, cluster.secret_key, "#/cluster")
    assert wait(d, leader_of) == leader
    wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, 'tr[data-node-id="%s"]' % leader)
         .get_attribute("data-state") == "Leader")

    os.kill(int(pids()[leader]), signal.SIGKILL)
    new = wait(d, lambda drv: (lambda l: l if l and l != leader else False)(leader_of(drv)), 30)
    wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, 'tr[data-node-id="%s"]' % leader)
         .get_attribute("data-reachable") == "false", 30)
    wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, 'tr[data-node-id="%s"]' % new)
         .get_attribute("data-state") == "Leader")
    wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, '#region-map li.leader').get_attribute("data-node-id") == new)
    wait(d, lambda drv: "down" in drv.find_element(By.CSS_SELECTOR, '#region-map li[data-node-id="%s"]' % leader)
         .get_attribute("class"))
    shot(d, "cluster-failover")

    # Freeze the third node too: the watching node is left without a quorum, and its cluster
    # view (read from its own state) still answers, now with two members unreachable.
    watching = str(watcher + 1)
    third = next(n for n in pids() if n not in (leader, watching))
    os.kill(int(pids()[third]), signal.SIGSTOP)
    try:
        # One rendering of the view shows both others unreachable: it came from the watching
        # node alone.
        wait(d, lambda drv: [drv.find_element(By.CSS_SELECTOR, 'tr[data-node-id="%s"]' % n).get_attribute("data-reachable")
                             for n in (third, leader)] == ["false", "false"], 60)
        assert "this node" in wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, 'tr[data-node-id="%s"] th' % watching).text)
        shot(d, "cluster-no-quorum")
    finally:
        os.kill(int(pids()[third]), signal.SIGCONT)
    d.find_element(By.ID, "signout").click()
