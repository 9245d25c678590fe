"""The web page in a real headless browser (Debian's chromium) against the served app: the list
of studies at ``/`` shows the finished smoke study, and its page shows the heatmap image and the
good-η table; the image the page points at is served, and the browser really draws it.

Fails (never skips) without chromium: the page is part of the service, and a run that silently
left it untested would pass for the wrong reason.
"""

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

INSTALL_HINT = (
    "Debian's chromium is needed for the browser test; install it with: "
    "apt-get update && apt-get install -y chromium"
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OPTIMIZERS = ["alig", "sgd", "adam"]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1400",
]  # fmt: skip


def chromium_binary() -> str:
    """The chromium executable, or fail with the install command."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.access("/usr/bin/chromium", os.X_OK):
        found = "/usr/bin/chromium"
    if found is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return found


def chromium(profile: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run headless chromium with a private profile; fail with its output if it fails."""
    command = [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(f"chromium exited with {result.returncode}:\n{result.stderr[-4000:]}")
    return result


def dump_dom(profile: Path, url: str) -> str:
    """The page's DOM after load, as chromium serialises it."""
    return chromium(profile, "--dump-dom", url).stdout


class Page(HTMLParser):
    """The parts of a page the tests look at: links, images by id, table rows by table id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.images: dict[str, dict[str, str]] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._href: str | None = None
        self._text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "a":
            self._href, self._text = found.get("href", ""), []
        elif tag == "img" and "id" in found:
            self.images[found["id"]] = found
        elif tag == "table":
            self._table = found.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
            self._href = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    """A fresh chromium profile directory."""
    return tmp_path / "chromium-profile"


def test_chromium_is_installed():
    result = subprocess.run(
        [chromium_binary(), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0 and "Chromium" in result.stdout, result.stdout + result.stderr


def test_the_index_lists_the_finished_study(service_url: str, smoke_study: dict, profile: Path):
    page = Page(dump_dom(profile, f"{service_url}/"))
    rows = page.tables.get("studies")
    assert rows, "no table#studies on /"
    assert rows[0] == ["Study", "Task", "Status", "Progress", "Created"]
    link = f"/ui/studies/{smoke_study['id']}"
    assert (link, "smoke") in page.links
    row = next(r for r in rows[1:] if r[1:3] == ["matrix-factorisation", "succeeded"])
    assert row[0] == "smoke"
    assert row[3].startswith("15/15")


def test_the_study_page_shows_the_heatmap_and_the_good_eta_table(
    service_url: str, smoke_study: dict, profile: Path, api: httpx.Client
):
    url = f"{service_url}/ui/studies/{smoke_study['id']}"
    page = Page(dump_dom(profile, url))

    image = page.images.get("heatmap")
    assert image is not None, "no <img id=heatmap> on the study page"
    assert image["src"].startswith(f"/studies/{smoke_study['id']}/heatmap?")
    assert "format=svg" in image["src"]
    assert image["alt"]
    served = api.get(urljoin(url, image["src"]))
    assert served.status_code == 200, served.text
    assert served.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(served.content).tag.endswith("svg")

    rows = page.tables.get("ranges")
    assert rows, "no good-η table (table#ranges) on the study page"
    assert rows[0] == [
        "Optimizer", "η low", "η high", "Decades", "Best η", "Best value", "Seeds per cell",
        "Diverged seeds",
    ]  # fmt: skip
    assert [r[0] for r in rows[1:]] == OPTIMIZERS
    assert all(len(r) == 8 for r in rows[1:])
    assert all(r[6] == "1" for r in rows[1:])  # the smoke preset runs one seed per cell
    assert any(r[4] != "—" for r in rows[1:])  # some optimizer has a best η

    hrefs = {href for href, _ in page.links}
    assert f"/studies/{smoke_study['id']}/export?format=csv" in hrefs
    assert smoke_study["dashboard_url"] in hrefs  # the Ray job in the dashboard


def test_the_browser_draws_the_heatmap(
    service_url: str, smoke_study: dict, profile: Path, tmp_path: Path
):
    """A screenshot of the study page: a PNG whose colourful pixels are the heatmap's cells
    (the rest of the page is dark text on white, blue links and one green word)."""
    shot = tmp_path / "study.png"
    url = f"{service_url}/ui/studies/{smoke_study['id']}"
    chromium(profile, f"--screenshot={shot}", url)
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(shot) as picture:
        assert picture.size == (1280, 1400)
        hsv = np.asarray(picture.convert("RGB").convert("HSV"))
    colourful = int(((hsv[..., 1] > 100) & (hsv[..., 2] > 60)).sum())
    # the 3 × 5 cells cover ~140,000 pixels; the blue links and the green status ~3,000
    assert colourful > 50_000, f"only {colourful} colourful pixels: the heatmap was not drawn"
