"""Reports come from run folders only: failed/unfinished runs never reach a table, and regenerating from scratch
gives byte-identical tables."""
import json
import shutil

import pytest
import yaml

from microclip.core import Config
from microclip.reports import load_runs, make_report


def _run(root, cfg: Config, name, top1, status="finished", experiment="adapt", ablation=None, zeroshot=None):
    d = root / cfg.dataset / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    reqs = [{"experiment": e, **({"ablation": ablation} if e == "ablations" else {})} for e in experiment.split(",")]
    (d / "study.json").write_text(json.dumps({"requests": reqs}))
    rows = [{"epoch": 0, "top1": 1.0, "zeroshot": zeroshot or {}}] + ([] if top1 is None else [
        {"epoch": e, "top1": top1 - 3 + e, "pl_acc_prior": 40. + e, "pl_acc_dynamic": 35. + 2 * e, "pl_acc_dka": 42. + e,
         "loss": 1.0 / e} for e in (1, 2, 3)])
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status == "finished":
        res = {} if top1 is None else {"top1": top1, "top1_cls": top1 - 1, "top1_fg": top1 - 2, "mean_per_class": top1}
        (d / "final.json").write_text(json.dumps({**res, "zeroshot": zeroshot or {}}))
    if status == "failed":
        (d / "error.json").write_text(json.dumps({"error": "RuntimeError: CUDA out of memory"}))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    base = dict(backbone="ViT-B-32", epochs=15)
    for ds in ("flowers", "dtd"):
        for seed in (0, 1, 2):
            # the default microCLIP run is also the γ = 0.5 point of the γ ablation (one shared folder)
            _run(root, Config(dataset=ds, seed=seed, **base), f"microclip-s{seed}", 75.0 + seed, experiment="adapt,ablations",
                 ablation="gamma")
            _run(root, Config(dataset=ds, seed=seed, method="baseline", **base), f"baseline-s{seed}", 70.0 + seed)
            for g in (0.0, 1.0):
                _run(root, Config(dataset=ds, seed=seed, gamma=g, **base), f"g{g}-s{seed}", 60 + 10 * g + seed,
                     experiment="ablations", ablation="gamma")
        _run(root, Config(dataset=ds, **base), "zeroshot-ViT-B-32-x", None, experiment="zeroshot",
             zeroshot={"hand-crafted": 66.0, "description mean": 67.0, "frozen LLM head": 68.0})
    _run(root, Config(dataset="flowers", seed=3, **base), "microclip-s3", 999.0, status="failed")
    _run(root, Config(dataset="flowers", seed=4, **base), "microclip-s4", 888.0, status="unfinished")
    return root


def test_failed_and_unfinished_runs_never_in_tables(runs, tmp_path):
    made = make_report(runs, tmp_path / "rep", figures=False)
    main = (tmp_path / "rep" / "tables" / "main.csv").read_text()
    assert "999" not in main and "888" not in main and "87" not in main   # 87-88: their metrics rows
    md = (tmp_path / "rep" / "tables" / "main.md").read_text()
    assert "76.00 ± 1.00" in md                                         # microCLIP on flowers: seeds 0-2 only
    assert "published: DPA (DPA poster, ViT-B/32)" in md and "75.56" in md
    inv = load_runs(runs)
    assert dict(inv.status.value_counts()) == {"finished": 26, "failed": 1, "unfinished": 1}
    assert {"main", "ablation_gamma", "inventory"} <= set(made)
    gamma = (tmp_path / "rep" / "tables" / "ablation_gamma.md").read_text()
    assert "gamma=0.5 (released default)" in gamma and "gamma=1.0" in gamma


def test_regenerating_reports_is_byte_identical(runs, tmp_path):
    out = tmp_path / "reports"
    make_report(runs, out, figures=True)
    files = sorted(p for p in out.rglob("*") if p.suffix in (".csv", ".md", ".tex"))
    first = {p: p.read_bytes() for p in files}
    assert (out / "figures" / "pseudo_label_accuracy.png").exists() and (out / "figures" / "gamma_sensitivity.png").exists()
    shutil.rmtree(out)
    make_report(runs, out, figures=True)
    assert sorted(p for p in out.rglob("*") if p.suffix in (".csv", ".md", ".tex")) == files
    for p in files: assert p.read_bytes() == first[p], p
    index = (out / "README.md").read_text()
    for p in files + [out / "figures" / "test_top1.png"]:
        if p.name != "README.md": assert p.relative_to(out).as_posix() in index


def test_upper_bound_runs_are_their_own_rows_and_curves(runs, tmp_path):
    # runs trained on the true labels (targets=labels) are a diagnostic: a separate recipe row in the main table,
    # separately labelled curves, and never the source of the pseudo-label figure or the saliency figure
    from microclip.reports import epoch_metrics
    for seed in (0, 1, 2):
        _run(runs, Config(dataset="flowers", seed=seed, backbone="ViT-B-32", epochs=15, targets="labels"),
             f"labels-s{seed}", 90.0 + seed)
    em = epoch_metrics(load_runs(runs))
    labels = set(em[em.dataset == "flowers"].method)
    assert len(labels) == 3 and sum(l.startswith("microCLIP") for l in labels) == 2   # two microCLIP recipes, named apart
    assert set(em[em.targets == "labels"].method) != set(em[em.targets == "pseudo"].method)
    make_report(runs, tmp_path / "rep", figures=False)
    md = (tmp_path / "rep" / "tables" / "main.md").read_text()
    assert "91.00 ± 1.00" in md and "76.00 ± 1.00" in md and "targets=labels" in md
