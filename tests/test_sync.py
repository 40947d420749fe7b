"""The package is generated from the notebooks: every module must name an existing source notebook."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_names_an_existing_notebook():
    mods = sorted(p for p in (ROOT / "microclip").glob("*.py") if p.name not in ("__init__.py", "_modidx.py"))
    assert mods, "no generated modules found"
    for p in mods:
        m = re.search(r"File to edit: \.\./(nbs/\S+\.ipynb)", p.read_text())
        assert m, f"{p.name} does not say which notebook it is exported from (hand-written module?)"
        assert (ROOT / m.group(1)).exists(), f"{p.name} names {m.group(1)}, which does not exist"


def test_every_exporting_notebook_has_a_module():
    for nb in sorted((ROOT / "nbs").glob("[0-9]*.ipynb")):
        m = re.search(r"#\| default_exp (\S+)", nb.read_text())
        if m:
            mod = m.group(1).replace('\\n"', "").strip('"').replace(".", "/")
            assert (ROOT / "microclip" / f"{mod}.py").exists(), f"{nb.name} exports {mod}, which is missing"
