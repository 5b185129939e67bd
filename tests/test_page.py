"""The web page in a real browser: headless Debian Chromium driven by selenium, against a real server."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from faceage.serve.app import create_app

from .conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = REPO / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.1)
    assert instance.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=900,1300"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _upload(browser, server: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    browser.find_element(By.ID, "file").send_keys(str(path))


def _wait(browser, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(condition)


def test_upload_astronaut_shows_one_face_with_an_age(browser, server, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from skimage import data

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo, quality=92)
    _upload(browser, server, photo)
    _wait(browser, lambda b: b.find_element(By.ID, "canvas").get_attribute("data-face-count") not in ("0", None)
          and b.find_element(By.ID, "result").is_displayed())  # fmt: skip
    assert browser.find_element(By.ID, "canvas").get_attribute("data-face-count") == "1"
    rows = browser.find_elements(By.CSS_SELECTOR, "#faces tbody tr")
    assert len(rows) == 1
    age = float(rows[0].find_elements(By.TAG_NAME, "td")[1].text)
    assert 20 <= age <= 60
    assert "1 face found" in browser.find_element(By.ID, "status").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "page-astronaut.png"))


def test_a_group_photo_draws_every_face(browser, server, photos):
    from selenium.webdriver.common.by import By

    _upload(browser, server, photos / "multiface.jpg")
    _wait(browser, lambda b: b.find_element(By.ID, "canvas").get_attribute("data-face-count") == "6")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#faces tbody tr")) == 6
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "page-multiface.png"))


def test_a_text_file_shows_the_error(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    text = tmp_path / "notes.txt"
    text.write_text("this is not a photo\n")
    _upload(browser, server, text)
    _wait(browser, lambda b: "Refused" in b.find_element(By.ID, "status").text)
    status = browser.find_element(By.ID, "status")
    assert "not an image" in status.text and "error" in status.get_attribute("class")
    assert not browser.find_element(By.ID, "result").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "page-refused.png"))
