import json
import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (run with --runslow)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: use --runslow")
    for it in items:
        if "slow" in it.keywords:
            it.add_marker(skip)


COLOUR_CLASSES = ["red square", "blue disk", "green bar"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny custom dataset: 3 colour classes on dark noise, 6 train / 3 test images each, CuPL-style descriptions."""
    root = tmp_path_factory.mktemp("custom")
    rng = np.random.default_rng(0)
    (root / "classes.txt").write_text("\n".join(COLOUR_CLASSES) + "\n")
    for split, n in (("train", 6), ("test", 3)):
        for i, c in enumerate(COLOUR_CLASSES):
            (root / split / c).mkdir(parents=True)
            for k in range(n):
                img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
                img[10:30, 10:30] = [(220, 30, 30), (30, 30, 220), (30, 200, 30)][i]
                Image.fromarray(img).save(root / split / c / f"{k}.png")
    desc = {c: [f"a photo of a {c}.", f"a {c} on a dark background.", f"something that looks like a {c}."]
            for c in COLOUR_CLASSES}
    (root / "descriptions.json").write_text(json.dumps(desc))
    return root
