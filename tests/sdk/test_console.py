"""The web console (/console/ on every node) in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium), against the same 3-node TLS cluster as the SDK tests.

Chromium does not trust the cluster's private CA, so the session accepts the node certificates
(acceptInsecureCerts); everything else is the browser's own: WebCrypto signing, fetch, the DOM.
Screenshots of each view go to RAFTKMS_CONSOLE_SHOTS when it is set (docs/console.md).
"""

import os
import ssl
import time
import urllib.request

import pytest
from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,
                                        TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

import kmstest
from test_replicas import common_client

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(width, height):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=%d,%d" % (width, height)):
        opts.add_argument(arg)
    opts.accept_insecure_certs = True
    os.environ.setdefault("SE_OFFLINE", "true")  # no Selenium Manager downloads
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            pytest.fail("%s is missing: apt-get install chromium chromium-driver (.ci/run does)" % path)
    d = chromium(1280, 900)
    yield d
    d.quit()


def shot(d, name):
    out = os.environ.get("RAFTKMS_CONSOLE_SHOTS")
    if out:
        os.makedirs(out, exist_ok=True)
        d.save_screenshot(os.path.join(out, name + ".png"))


def wait(d, cond, timeout=15):
    # The views re-render after each action: an element found a moment ago may be gone.
    try:
        return WebDriverWait(d, timeout, ignored_exceptions=(NoSuchElementException,
                                                             StaleElementReferenceException)).until(cond)
    except TimeoutException:
        # Say what the page showed instead.
        try:
            page = d.execute_script(
                "return location.href + '\\n' + (document.getElementById('main') || document.body).innerText"
                " + '\\nstatus: ' + ((document.getElementById('status') || {}).innerText || '')")
        except Exception as e:  # noqa: BLE001 (the page itself may be gone)
            page = "(unreadable: %s)" % e
        raise TimeoutException("waited %ss; the page showed:\n%s" % (timeout, page[:3000]))


def sign_in(d, endpoint, secret_id, secret_key, hash_="#/keys"):
    # A full page load whatever came before (to the same page, only the fragment would change,
    # and a session left signed in would stay so).
    d.get("about:blank")
    d.get("https://%s/console/%s" % (endpoint, hash_))
    wait(d, EC.presence_of_element_located((By.ID, "signin")))
    d.find_element(By.ID, "secret-id").send_keys(secret_id)
    d.find_element(By.ID, "secret-key").send_keys(secret_key)
    d.find_element(By.ID, "signin-button").click()


def test_console_headers(cluster):
    ctx = ssl.create_default_context(cafile=cluster.ca_bundle)
    with urllib.request.urlopen("https://%s/console/" % cluster.endpoints[0], context=ctx) as r:
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert b"app.js" in r.read()
    with urllib.request.urlopen("https://%s/console/app.js" % cluster.endpoints[1], context=ctx) as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert r.headers["X-Frame-Options"] == "DENY" and b"TC3-HMAC-SHA256" in r.read()


def test_console_end_to_end(cluster, clients, client, browser):
    d = browser
    # A wrong secret cannot sign in.
    sign_in(d, cluster.endpoints[0], cluster.secret_id, "not-the-secret-key-000000000000")
    err = wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "#main .error")))
    assert err.get_attribute("data-code") == "AuthFailure.SignatureFailure", err.text
    assert not d.find_element(By.ID, "nav").is_displayed()
    shot(d, "signin-refused")

    # Sign in on node 1 and create a key in the console.
    sign_in(d, cluster.endpoints[0], cluster.secret_id, cluster.secret_key)
    wait(d, EC.presence_of_element_located((By.ID, "create")))
    alias = kmstest.unique_alias("console")
    d.find_element(By.ID, "new-alias").send_keys(alias)
    # Markup in a description is shown as text, never parsed.
    d.find_element(By.ID, "new-description").send_keys("made in the console <img src=x id=injected>")
    d.find_element(By.ID, "create-button").click()
    key_id = wait(d, lambda drv: drv.find_element(By.LINK_TEXT, alias)
                  .find_element(By.XPATH, "./ancestor::tr").get_attribute("data-key-id"))
    assert key_id and kmstest.describe(client, key_id).Description == "made in the console <img src=x id=injected>"
    shot(d, "keys")

    # Listed at once on node 2's console (the URL with its filter is bookmarkable).
    sign_in(d, cluster.endpoints[1], cluster.secret_id, cluster.secret_key, "#/keys?alias=" + alias)
    wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-key-id="%s"]' % key_id)))
    assert d.find_element(By.ID, "filter-alias").get_attribute("value") == alias
    # The filter reached the node: only this key is listed.
    assert [r.get_attribute("data-key-id") for r in d.find_elements(By.CSS_SELECTOR, "#keys tbody tr")] == [key_id]

    # An Encrypt through the SDK shows up in the key's audit events.
    kmstest.encrypt(clients[2], key_id, b"seen by the console")
    d.get("https://%s/console/#/keys/%s" % (cluster.endpoints[1], key_id))
    deadline = time.time() + 20
    while True:
        wait(d, EC.presence_of_element_located((By.ID, "key-facts")))
        try:
            wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-event-name="Encrypt"]')), 3)
            break
        except TimeoutException:
            assert time.time() < deadline, "the Encrypt never appeared in the console's audit view"
            # Render the view again (a read's audit record reaches disk within the flush interval).
            d.execute_script("route(location.hash)")
    facts = wait(d, lambda drv: (lambda f: f if "Alias" in f else False)(
        {e.get_attribute("data-fact"): e.text for e in drv.find_elements(By.CSS_SELECTOR, "#key-facts dd")}))
    assert facts["Alias"] == alias and facts["State"] == "Enabled", facts
    assert facts["Description"] == "made in the console <img src=x id=injected>"
    assert not d.find_elements(By.ID, "injected")
    shot(d, "key")

    # The alias and description are changed in place (what the SDK then reads).
    field = d.find_element(By.ID, "edit-description")
    field.clear()
    field.send_keys("renamed in the console")
    d.find_element(By.ID, "edit-alias").clear()
    d.find_element(By.ID, "edit-alias").send_keys(alias + "-renamed")
    d.find_element(By.ID, "save-key").click()
    wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, '#key-facts dd[data-fact="Alias"]').text == alias + "-renamed")
    m = kmstest.describe(clients[0], key_id)
    assert (m.Alias, m.Description) == (alias + "-renamed", "renamed in the console")
    # A taken alias is refused with the API's code, and nothing changes.
    kmstest.call(client, "CreateKey", Alias=alias + "-taken")
    d.find_element(By.ID, "edit-alias").clear()
    d.find_element(By.ID, "edit-alias").send_keys(alias + "-taken")
    d.find_element(By.ID, "save-key").click()
    wait(d, lambda drv: "AliasAlreadyExists" in drv.find_element(By.ID, "status").text)
    assert kmstest.describe(clients[0], key_id).Alias == alias + "-renamed"
    d.execute_script("route(location.hash)")
    wait(d, lambda drv: drv.find_element(By.ID, "edit-alias").get_attribute("value") == alias + "-renamed")

    # Its one material version, no regions, no bindings; "Rotate now" (confirmed) adds a version
    # and the rotation shows in the key's history.
    assert len(d.find_elements(By.CSS_SELECTOR, "#key-versions li")) == 1
    assert d.find_element(By.ID, "key-regions").text == "single-region key"
    assert d.find_element(By.ID, "key-bindings").text == "none"
    d.find_element(By.ID, "rotate").click()
    wait(d, EC.alert_is_present()).accept()
    wait(d, lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#key-versions li")) == 2)
    assert d.find_elements(By.CSS_SELECTOR, "#key-versions li")[0].text.startswith("version 2")
    wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, '#rotations tr[data-event-name="RotateKey"]')))

    # Disabled in the console: the SDK is refused at once, through another node.
    d.find_element(By.CSS_SELECTOR, '#key-actions button.disable').click()
    # It asks first, saying what follows.
    alert = wait(d, EC.alert_is_present())
    assert "refused at once" in alert.text
    alert.accept()
    wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, '#key-facts dd[data-fact="State"]').text == "Disabled")
    e = kmstest.expect_error(clients[2], "Encrypt", KeyId=key_id, Plaintext=kmstest.b64(b"x"))
    assert e.get_code() == "ResourceUnavailable.CmkDisabled"

    # The audit search view, by key and action.
    d.get("https://%s/console/#/audit?key=%s&action=DisableKey&hours=1" % (cluster.endpoints[1], key_id))
    # The key's page listed its DisableKey too: wait for the audit view itself (rendered whole).
    wait(d, EC.presence_of_element_located((By.ID, "audit-search")))
    row = wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-event-name="DisableKey"]')))
    assert row.get_attribute("data-key-id") == key_id
    assert {r.get_attribute("data-key-id") for r in d.find_elements(By.CSS_SELECTOR, "table.audit tbody tr")} == {key_id}
    shot(d, "audit")
    d.find_element(By.ID, "signout").click()
    wait(d, EC.presence_of_element_located((By.ID, "signin")))


def test_a_sub_user_without_permission_sees_the_refusal(cluster, browser):
    from test_policies import Account
    account = Account(cluster)
    cred, _ = account.identity("user", "console-nobody")
    d = browser
    sign_in(d, cluster.endpoints[2], cred["secret_id"], cred["secret_key"])
    err = wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "#main .error")))
    assert err.get_attribute("data-code") in ("AuthFailure.UnauthorizedOperation", "UnauthorizedOperation"), err.text
    assert d.find_element(By.ID, "nav").is_displayed()  # signed in: the credential is valid
    assert not d.find_elements(By.ID, "keys")  # the refusal replaced the table
    shot(d, "refused")


def test_cluster_and_dr_views(cluster, clients, client, browser):
    d = browser
    sign_in(d, cluster.endpoints[1], cluster.secret_id, cluster.secret_key, "#/cluster")

    def members(drv):
        rows = drv.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")
        ok = len(rows) == len(cluster.endpoints) and all(r.get_attribute("data-reachable") == "true" for r in rows)
        return {r.get_attribute("data-node-id"): r.get_attribute("data-state") for r in rows} if ok else False
    states = wait(d, members)
    leader = wait(d, lambda drv: drv.find_element(By.ID, "cluster-leader").get_attribute("data-leader"))
    assert states[leader] == "Leader", states
    assert sorted(states.values()) == ["Follower"] * (len(states) - 1) + ["Leader"], states
    # The region map holds every member, the leader marked (read within waits: the view
    # re-renders every 2 s).
    wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, '#region-map li.leader').get_attribute("data-node-id") == leader)
    wait(d, lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#region-map li.member")) == len(cluster.endpoints))
    # Traffic through node 3 shows in its chart: its request rate rises above zero.
    key_id = kmstest.call(client, "CreateKey", Alias=kmstest.unique_alias("chart")).KeyId

    def busy(drv):
        for _ in range(20):
            kmstest.encrypt(clients[2], key_id, b"chart")
        caption = drv.find_element(By.CSS_SELECTOR, '.node-charts[data-node-id="3"] figcaption strong')
        return float(caption.text) > 0
    wait(d, busy, 30)
    # The chart draws a line through every interval so far: wait for a few.
    line = '.node-charts[data-node-id="3"] svg polyline'
    wait(d, lambda drv: busy(drv) and len(drv.find_element(By.CSS_SELECTOR, line).get_attribute("points").split()) >= 4, 30)
    shot(d, "cluster")

    # The DR view: the reports (none, or some), and a drill button exactly where the node
    # offers drills (a `raftkms dev` cluster; not the suite's own cluster, where StartDrill is
    # refused).
    d.get("https://%s/console/#/dr" % cluster.endpoints[1])
    wait(d, lambda drv: drv.find_elements(By.ID, "drills") or drv.find_elements(By.ID, "no-drills"))
    cc = common_client(cluster, cluster.endpoints[0], cluster.region)
    reply = cc.call_json("DescribeDrillReports", {})["Response"]
    startable = reply["StartableRegions"]
    if startable:
        options = [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#drill-region option")]
        assert options == startable and d.find_elements(By.ID, "drill-button")
    else:
        assert not d.find_elements(By.ID, "drill-button") and reply["Running"] is False
        with pytest.raises(Exception) as e:
            cc.call_json("StartDrill", {"Region": cluster.region})
        assert e.value.get_code() == "UnsupportedOperation", e.value
    shot(d, "dr-reports")
    d.find_element(By.ID, "signout").click()
    wait(d, EC.presence_of_element_located((By.ID, "signin")))


def test_an_account_that_is_not_an_operator_does_not_see_the_cluster(cluster, browser):
    from test_policies import Account
    account = Account(cluster)
    d = browser
    # Without a mouse: the SecretKey field follows the SecretId field in tab order, and Enter
    # signs in.
    d.get("about:blank")
    d.get("https://%s/console/#/cluster" % cluster.endpoints[0])
    wait(d, EC.presence_of_element_located((By.ID, "signin")))
    d.find_element(By.ID, "secret-id").send_keys(account.root_cred["secret_id"] + Keys.TAB)
    assert d.switch_to.active_element.get_attribute("id") == "secret-key"
    d.switch_to.active_element.send_keys(account.root_cred["secret_key"] + Keys.ENTER)
    err = wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "#cluster .error")))
    assert err.get_attribute("data-code") == "AuthFailure.UnauthorizedOperation", err.text
    assert "not an operator" in err.text
    assert not d.find_elements(By.ID, "nodes")
    # The DR view, opened from the navigation with the keyboard.
    d.find_element(By.CSS_SELECTOR, 'nav a[href="#/dr"]').send_keys(Keys.ENTER)
    wait(d, lambda drv: drv.find_element(By.TAG_NAME, "h2").text == "Disaster recovery")
    err = wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "#main .error")))
    assert err.get_attribute("data-code") == "AuthFailure.UnauthorizedOperation", err.text
    d.find_element(By.ID, "signout").click()
    wait(d, EC.presence_of_element_located((By.ID, "signin")))


def test_keys_filters_and_pages(cluster, browser):
    # An account of its own, so that its key count is known: 51 keys tagged with one team.
    from test_policies import Account
    account = Account(cluster)
    team = "console-" + kmstest.unique_alias("t")[-8:]
    tagged = [kmstest.call(account.root[i % 3], "CreateKey", Alias=kmstest.unique_alias("page"),
                           Tags=[{"TagKey": "team", "TagValue": team}]).KeyId for i in range(51)]
    other = kmstest.call(account.root[0], "CreateKey", Alias=kmstest.unique_alias("untagged")).KeyId
    d = browser
    # Node 3's own region may be another (a dev cluster of two regions): the URL names the region.
    sign_in(d, cluster.endpoints[2], account.root_cred["secret_id"], account.root_cred["secret_key"],
            "#/keys?region=%s&tag=team%%3D%s" % (cluster.region, team))

    def listed(drv):
        return [r.get_attribute("data-key-id") for r in drv.find_elements(By.CSS_SELECTOR, "#keys tbody tr")]
    first = wait(d, lambda drv: listed(drv) if len(listed(drv)) == 50 else False)
    assert other not in first and set(first) <= set(tagged)
    assert not d.find_elements(By.ID, "prev")
    d.find_element(By.ID, "next").click()
    second = wait(d, lambda drv: listed(drv) if len(listed(drv)) == 1 else False)
    assert set(first) | set(second) == set(tagged)
    assert "page=1" in d.current_url and not d.find_elements(By.ID, "next")
    d.find_element(By.ID, "prev").click()
    wait(d, lambda drv: len(listed(drv)) == 50)
    # Origin and usage narrow it: none of these keys is imported (EXTERNAL) or asymmetric.
    d.get("https://%s/console/#/keys?region=%s&origin=EXTERNAL&tag=team%%3D%s" % (cluster.endpoints[2], cluster.region, team))
    wait(d, lambda drv: "0 keys" in drv.find_element(By.CSS_SELECTOR, "#keys caption").text)
    d.get("https://%s/console/#/keys?region=%s&usage=ENCRYPT_DECRYPT&origin=TENCENT_KMS&tag=team%%3D%s" % (cluster.endpoints[2], cluster.region, team))
    wait(d, lambda drv: "51 keys" in drv.find_element(By.CSS_SELECTOR, "#keys caption").text)
    assert d.find_element(By.ID, "filter-origin").get_attribute("value") == "TENCENT_KMS"
    d.get("https://%s/console/#/keys?region=%s&usage=ASYMMETRIC_SIGN_VERIFY_SM2&tag=team%%3D%s" % (cluster.endpoints[2], cluster.region, team))
    wait(d, lambda drv: "0 keys" in drv.find_element(By.CSS_SELECTOR, "#keys caption").text)
    # The filter form builds the same URL.
    d.get("https://%s/console/#/keys" % cluster.endpoints[2])
    # The previous view had the same form, filled in: wait for the new one.
    wait(d, lambda drv: drv.find_element(By.ID, "filter-tag").get_attribute("value") == "")
    d.find_element(By.ID, "filter-tag").send_keys("team=" + team)
    d.find_element(By.ID, "filter-region").send_keys(cluster.region)
    d.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait(d, lambda drv: "51 keys" in drv.find_element(By.CSS_SELECTOR, "#keys caption").text)
    assert "tag=team%3D" + team in d.current_url
    d.find_element(By.ID, "signout").click()
    wait(d, EC.presence_of_element_located((By.ID, "signin")))


def test_key_page_shows_the_regions_of_a_multi_region_key(cluster, client, browser):
    from test_replicas import OTHER_REGION
    key_id = kmstest.call(client, "CreateKey", Alias=kmstest.unique_alias("regions")).KeyId
    common_client(cluster, cluster.endpoints[0], cluster.region).call_json(
        "ReplicateKey", {"KeyId": key_id, "DestinationRegions": [OTHER_REGION]})
    d = browser
    sign_in(d, cluster.endpoints[1], cluster.secret_id, cluster.secret_key, "#/keys/" + key_id)
    regions = wait(d, EC.presence_of_element_located((By.ID, "key-regions")))
    assert regions.text == "primary in %s; replicas in %s" % (cluster.region, OTHER_REGION), regions.text
    # The replica, through the region filter's link.
    d.get("https://%s/console/#/keys?region=%s&alias=%s" % (cluster.endpoints[1], OTHER_REGION, key_id))
    link = wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, '#keys tr[data-key-id="%s"] a' % key_id)))
    link.click()
    facts = wait(d, lambda drv: (lambda f: f if f.get("KeyId") == key_id else False)(
        {e.get_attribute("data-fact"): e.text for e in drv.find_elements(By.CSS_SELECTOR, "#key-facts dd")}))
    assert facts["Replica of region"] == cluster.region, facts
    assert OTHER_REGION in d.find_element(By.TAG_NAME, "h2").text
    d.find_element(By.ID, "signout").click()
    wait(d, EC.presence_of_element_located((By.ID, "signin")))


def test_every_view_reflows_at_200_percent_zoom(cluster, client):
    # A 1280-pixel window at 200 % zoom is 640 CSS pixels wide: no view may make the page scroll
    # sideways (wide tables scroll in a region of their own).
    key_id = kmstest.call(client, "CreateKey", Alias=kmstest.unique_alias("zoom")).KeyId
    d = chromium(640, 900)
    try:
        views = [("#/keys?region=" + cluster.region, "keys"), ("#/keys/%s?region=%s" % (key_id, cluster.region), "key-facts"),
                 ("#/cluster", "nodes"), ("#/dr", None), ("#/audit?hours=1", "audit-search")]
        for view, marker in views:
            sign_in(d, cluster.endpoints[0], cluster.secret_id, cluster.secret_key, view)
            if marker:
                wait(d, EC.presence_of_element_located((By.ID, marker)))
            else:
                wait(d, lambda drv: drv.find_elements(By.ID, "drills") or drv.find_elements(By.ID, "no-drills"))
            width, inner = d.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert inner <= 660 and width <= inner, (view, width, inner)
    finally:
        d.quit()
