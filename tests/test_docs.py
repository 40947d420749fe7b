"""The docs site: one notebook page built with mkdocs-jupyter and rendered in headless Chromium (slow: ~1 min)."""
import pytest

from microclip.docs import build_docs, find_chromium, screenshot


@pytest.mark.slow
def test_docs_page_renders_with_inline_figure(tmp_path):
    if find_chromium() is None: pytest.skip("Chromium not installed (apt-get install -y chromium)")
    site = build_docs(["18_reports"], site=tmp_path / "site")
    html = (site / "18_reports" / "index.html").read_text()
    assert "Mean ± spread over seeds" in html and "data:image/png;base64" in html   # prose and an executed figure
    png = screenshot(site / "18_reports" / "index.html", tmp_path / "page.png")
    assert png.stat().st_size > 50_000                                               # a rendered page, not a blank one
