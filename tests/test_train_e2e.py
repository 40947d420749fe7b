"""End-to-end: train → evaluate → predict on a generated custom image folder with a random-weight tiny CLIP."""
import json

import pytest
import torch

from microclip.cli import main
from microclip.core import load_config
from microclip.saliency import DEGENERATE_DENSITY
from microclip.train import train

from conftest import COLOUR_CLASSES as CLASSES

TINY = ["backbone=microclip-tiny", "pretrained=", "epochs=2", "batch_size=6", "n_crops=2", "workers=0",
        "eval_batch_size=9", "device=cpu"]


def test_train_evaluate_predict(folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(folder), "--run-dir", str(run), "--set", *TINY]) == 0
    final = json.loads((run / "final.json").read_text())
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert set(rows[0]["zeroshot"]) == {"hand-crafted", "description mean", "frozen LLM head"}
    assert {"pl_acc_dka", "pl_acc_prior", "pl_acc_dynamic", "loss", "top1"} <= set(rows[1])
    assert 0 <= final["top1"] <= 100 and len(final["per_class"]) == 3
    # every epoch logs the [CLS]/[FG] readouts and the cut's diagnostics; final.json says whether the cut degenerated
    assert {"train_acc_cls", "train_acc_fg", "fg_target_agree", "ncut_density", "ncut_distinct", "soap_entropy"} <= set(rows[1])
    assert final["ncut_degenerate"] == (rows[-1]["ncut_density"] >= DEGENERATE_DENSITY)
    degenerate_epochs = [r["ncut_density"] >= DEGENERATE_DENSITY for r in rows[1:]]
    assert ("NCut graph is complete" in capsys.readouterr().out) == any(degenerate_epochs)   # said in the log
    assert main(["evaluate", "--dataset", str(folder), "--ckpt-path", str(run / "checkpoint.pt")]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["top1"] == pytest.approx(final["top1"])   # the checkpoint alone reproduces the final score
    img = next((folder / "test" / "blue disk").iterdir())
    assert main(["predict", "--ckpt-path", str(run / "checkpoint.pt"), str(img), "--top-k", "2", "--format", "json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert [p["rank"] for p in pred] == [1, 2] and all(p["class"] in CLASSES for p in pred)


def test_resume_matches_uninterrupted_and_runs_are_deterministic(folder, tmp_path):
    from microclip.core import parse_overrides
    cfg = load_config("default", {"dataset": str(folder), **parse_overrides(TINY), "epochs": 3})
    straight = train(cfg, run_dir=tmp_path / "a", progress=False)
    again = train(cfg, run_dir=tmp_path / "b", progress=False)
    assert straight["top1"] == again["top1"] and straight["per_class"] == again["per_class"]
    ra = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in ra[1:]] == [r["loss"] for r in rb[1:]]
    assert train(cfg, run_dir=tmp_path / "c", progress=False, stop_after=1) == {"stopped_after": 1}
    assert not (tmp_path / "c" / "final.json").exists()
    (tmp_path / "c" / "error.json").write_text('{"error": "killed", "completed_epochs": 1}')   # how the stop was recorded
    resumed = train(cfg, run_dir=tmp_path / "c", progress=False)
    assert resumed["top1"] == straight["top1"]
    assert not (tmp_path / "c" / "error.json").exists()         # a finished run carries no error of an earlier stop
    rc = [json.loads(l) for l in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rc[1:]] == [r["loss"] for r in ra[1:]]


def test_baseline_runs(folder, tmp_path):
    from microclip.core import parse_overrides
    cfg = load_config("default", {"dataset": str(folder), **parse_overrides(TINY), "method": "baseline", "epochs": 1})
    res = train(cfg, run_dir=tmp_path / "base", progress=False)
    assert "top1_fg" not in res and 0 <= res["top1"] <= 100


@pytest.mark.slow
def test_vit_b32_full_cycle(folder, tmp_path):
    """Issue 3: a random-weight ViT-B/32 at 224 px through train + evaluate on a few generated images."""
    cfg = load_config("default", {"dataset": str(folder), "backbone": "ViT-B-32", "pretrained": None, "epochs": 1,
                                  "batch_size": 6, "n_crops": 2, "workers": 0, "device": "cpu"})
    res = train(cfg, run_dir=tmp_path / "b32", progress=False)
    assert torch.load(tmp_path / "b32" / "checkpoint.pt", weights_only=False)["config"]["backbone"] == "ViT-B-32"
    assert 0 <= res["top1"] <= 100
