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


def test_paper_tables_and_their_index(runs, tmp_path):
    # Tables 2 and 4 come from the fixture's runs (default runs and the γ axis); Tables 3 and 5 have no runs yet,
    # so the index names the command that makes them instead of a file
    out = tmp_path / "rep"
    made = make_report(runs, out, figures=False)
    assert {"paper_table2_coarse_fine", "paper_table4_pseudo_labeler"} <= set(made)
    assert not {"paper_table3_soap", "paper_table5_classifier_init"} & set(made)
    t2 = (out / "tables" / "paper_table2_coarse_fine.md").read_text()
    assert t2.startswith("**Paper Table 2")
    assert "| [CLS] only (coarse) · test readout of the default model | 75.00 ± 1.00 | 75.00 ± 1.00 | 75.00 |" in t2   # top1 − 1
    assert "| [FG] only (fine) · test readout of the default model | 74.00 ± 1.00 | 74.00 ± 1.00 | 74.00 |" in t2       # top1 − 2
    t4 = (out / "tables" / "paper_table4_pseudo_labeler.md").read_text()
    rows = [l for l in t4.splitlines() if l.startswith("| ") and "±" in l]
    assert [r.split(" (")[0] for r in rows] == ["| frozen prior only", "| dynamic only", "| DKA: both, γ = 0.5"], rows
    assert "71.00 ± 1.00" in rows[0] and "61.00 ± 1.00" in rows[1] and "76.00 ± 1.00" in rows[2] and "released default" in rows[2]
    index = (out / "README.md").read_text()
    for num in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Figure 3", "Figures 1, 4, 9"):
        assert f"| {num} |" in index, num
    assert "[tables/paper_table2_coarse_fine.md](tables/paper_table2_coarse_fine.md)" in index
    assert "`make study EXPERIMENTS=ablations ABLATIONS=soap_query`" in index
    assert "`microclip saliency --ckpt-path runs/dtd/microclip-s0`, then `make report`" in index   # no figure yet: how to make one
    assert "faithfulness.md" in index and "make verify-release" in index


def test_saliency_figures_are_copied_from_run_folders_never_drawn(runs, tmp_path):
    from PIL import Image
    from microclip.core import sha256
    def figure(run, drawn_from: bytes):
        (run / "saliency").mkdir()
        Image.new("RGB", (8, 8), (0, 128, 255)).save(run / "saliency" / "saliency.png")
        (tmp_path / "ck").write_bytes(drawn_from)
        summary = {"masks": {"values": {"fg_fraction": 0.9, "iou_object": 0.25}}, "cls_attention": {"object_share": 0.3},
                   "fg_attention": {"object_share": 0.6}}
        (run / "saliency" / "saliency.json").write_text(json.dumps(
            {"figure": "saliency.png", "checkpoint_sha256": sha256(tmp_path / "ck"), "n_images": 8, "model": f"run {run.name}",
             "command": f"microclip saliency --ckpt-path {run} -n 8", "summary": summary}))
    for ds in ("flowers", "dtd"): (runs / ds / "microclip-s0" / "checkpoint.pt").write_bytes(b"not a checkpoint")  # never loaded
    figure(runs / "flowers" / "microclip-s0", b"not a checkpoint")
    figure(runs / "dtd" / "microclip-s0", b"an earlier checkpoint")
    out = tmp_path / "rep"
    made = make_report(runs, out, figures=True)
    fig = out / "figures" / "paper_figures_1_4_9_flowers_microclip-s0.png"
    assert fig.read_bytes() == (runs / "flowers" / "microclip-s0" / "saliency" / "saliency.png").read_bytes()
    assert not (out / "figures" / "paper_figures_1_4_9_dtd_microclip-s0.png").exists()
    index = (out / "README.md").read_text()
    assert f"`microclip saliency --ckpt-path {runs / 'flowers' / 'microclip-s0'} -n 8`" in index
    assert "dtd/microclip-s0/saliency: drawn from an earlier checkpoint" in index
    numbers = (out / "tables" / "paper_figures_1_4_9_saliency.md").read_text()
    assert "90% / 0.25 / —" in numbers and "30% / 60%" in numbers
    assert "paper_figures_1_4_9_saliency" in made
