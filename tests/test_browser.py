"""The browser page of `jax-interact serve` in headless Chromium, a WAV file as its microphone."""

import pathlib
import shutil

import numpy as np
import pytest
import soundfile

from jax_interact import cli
from served_model import running_server, write_workdir

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
USER_BLUE = [0x4A, 0x8A, 0xD4]  # the timeline's colour for "you spoke"

if not (pathlib.Path(CHROMIUM).exists() and pathlib.Path(CHROMEDRIVER).exists()):
  pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them with apt-get; "
              "this machine could not)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def speech_like_wav(path: pathlib.Path) -> pathlib.Path:
  """4 s at 48 kHz: 0.6 s tone bursts with pauses, as 16-bit PCM (Chromium loops it)."""
  rate = 48000
  t = np.arange(4 * rate) / rate
  bursts = (t % 1.0) < 0.6
  wave = 0.4 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) * bursts
  soundfile.write(path, wave.astype(np.float32), rate, subtype="PCM_16")
  return path


@pytest.fixture
def browser(tmp_path):
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in ("--headless=new", "--use-fake-ui-for-media-stream",
               "--use-fake-device-for-media-stream",
               f"--use-file-for-fake-audio-capture={speech_like_wav(tmp_path / 'in.wav')}",
               "--autoplay-policy=no-user-gesture-required", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
    options.add_argument(flag)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  yield driver
  driver.quit()
  shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_page_streams_the_microphone_and_plays_the_model(tmp_path, browser):
  workdir = write_workdir(tmp_path / "run")
  assert cli.main(["export", "--workdir", str(workdir), "--out", str(tmp_path / "bundle"),
                   "--batch", "1"]) == 0
  with running_server("--bundle", str(tmp_path / "bundle")) as (_, url):
    browser.get(f"{url}/")
    assert browser.find_element(By.ID, "status").text == "idle"
    browser.find_element(By.ID, "start").click()
    stats = lambda: browser.execute_script("return window.jaxInteract")
    # Ten micro-turns in which the server heard the page's microphone.
    WebDriverWait(browser, 180).until(lambda _: stats()["turns"] - stats()["missing"] >= 10)
    now = stats()
    assert now["state"] == "live" and now["errors"] == []
    assert now["session"] and browser.find_element(By.ID, "status").text.startswith("live")
    assert now["sentSamples"] > 0 and now["audioMessages"] >= now["turns"] - 1
    assert now["audioSamples"] == 3200 * now["audioMessages"]  # 200 ms of 16 kHz each
    assert browser.find_element(By.ID, "said").text  # the model's words so far
    blue = browser.execute_script(
        "const c = document.getElementById('timeline');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        f"for (let i = 0; i < d.length; i += 4) n += d[i] == {USER_BLUE[0]} && "
        f"d[i + 1] == {USER_BLUE[1]} && d[i + 2] == {USER_BLUE[2]}; return n;")
    assert blue > 0  # the timeline shows the microphone's bursts as the user speaking
    browser.find_element(By.ID, "stop").click()
    WebDriverWait(browser, 60).until(lambda _: stats()["state"] == "closed")
