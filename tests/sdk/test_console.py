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
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

import kmstest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            pytest.fail("%s is missing: apt-get install chromium chromium-driver (.ci/run does)" % path)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.accept_insecure_certs = True
    os.environ.setdefault("SE_OFFLINE", "true")  # no Selenium Manager downloads
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield d
    d.quit()


def shot(d, name):
    out = os.environ.get("RAFTKMS_CONSOLE_SHOTS")
    if out:
        os.makedirs(out, exist_ok=True)
        d.save_screenshot(os.path.join(out, name + ".png"))


def wait(d, cond, timeout=15):
    # The views re-render after each action: an element found a moment ago may be gone.
    return WebDriverWait(d, timeout, ignored_exceptions=(NoSuchElementException,
                                                         StaleElementReferenceException)).until(cond)


def sign_in(d, endpoint, secret_id, secret_key, hash_="#/keys"):
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

    # Disabled in the console: the SDK is refused at once, through another node.
    d.find_element(By.CSS_SELECTOR, '#key-actions button.disable').click()
    wait(d, lambda drv: drv.find_element(By.CSS_SELECTOR, '#key-facts dd[data-fact="State"]').text == "Disabled")
    e = kmstest.expect_error(clients[2], "Encrypt", KeyId=key_id, Plaintext=kmstest.b64(b"x"))
    assert e.get_code() == "ResourceUnavailable.CmkDisabled"

    # The audit search view, by key and action.
    d.get("https://%s/console/#/audit?key=%s&action=DisableKey&hours=1" % (cluster.endpoints[1], key_id))
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
