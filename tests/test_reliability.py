"""Issue 8: bad inputs fail early with one clear message and write nothing; crashes resume; runs are deterministic."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from microclip.cli import main
from microclip.core import MicroclipError, load_config, parse_overrides
from microclip.train import train

CLASSES = ["ash owl", "elm owl", "oak owl"]
TINY = ["backbone=microclip-tiny", "pretrained=", "epochs=1", "batch_size=6", "n_crops=2", "workers=0",
        "eval_batch_size=9", "device=cpu"]


def make_folder(root, classes=CLASSES, desc=None, n=(4, 2)):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for split, k in zip(("train", "test"), n):
        for c in dict.fromkeys(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(k):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / f"{i}.png")
    desc = desc if desc is not None else {c: [f"a photo of an {c}.", f"an {c} on a branch."] for c in classes}
    (root / "descriptions.json").write_text(json.dumps(desc))
    return root


def snapshot(path):
    return sorted((str(p.relative_to(path)), p.stat().st_mtime_ns) for p in path.rglob("*")) if path.exists() else None


def fails_cleanly(args, contains, capsys, run_dir, watched=()):
    before = [snapshot(w) for w in watched]
    assert main(args + ["--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert contains in err, err
    assert err.count("error:") == 1
    assert not run_dir.exists(), "a failed start must not create the run folder"
    assert [snapshot(w) for w in watched] == before, "a failed start must not change existing files"


@pytest.fixture
def good(tmp_path):
    return make_folder(tmp_path / "good")


@pytest.mark.parametrize("override,message", [
    (["gama=0.3"], "did you mean 'gamma'"),
    (["gamma=1.5"], "gamma must be in [0, 1]"),
    (["fusion_ratio=-0.1"], "fusion_ratio must be in [0, 1]"),
    (["n_crops=0"], "n_crops must be > 0"),
    (["backbone=ViT-B-33"], "did you mean 'ViT-B-32'"),
])
def test_bad_options(good, tmp_path, capsys, override, message):
    fails_cleanly(["train", "--dataset", str(good), "--set", *TINY, *override], message, capsys, tmp_path / "run", [good])


def test_unknown_dataset(tmp_path, capsys):
    fails_cleanly(["train", "--dataset", "microwrld", "--set", *TINY], "did you mean 'microworld'", capsys, tmp_path / "run")


def test_empty_data_folder(tmp_path, capsys):
    root = make_folder(tmp_path / "empty", n=(0, 2))
    fails_cleanly(["train", "--dataset", str(root), "--set", *TINY], "no images", capsys, tmp_path / "run", [root])


def test_classes_without_descriptions_are_listed(tmp_path, capsys):
    root = make_folder(tmp_path / "d", desc={"ash owl": ["an ash owl."]})
    fails_cleanly(["train", "--dataset", str(root), "--set", *TINY], "elm owl", capsys, tmp_path / "run", [root])


def test_descriptions_for_unknown_classes(tmp_path, capsys):
    desc = {c: [f"a {c}."] for c in CLASSES + ["pine owl"]}
    root = make_folder(tmp_path / "d", desc=desc)
    fails_cleanly(["train", "--dataset", str(root), "--set", *TINY], "pine owl", capsys, tmp_path / "run", [root])


def test_duplicate_class_names(tmp_path, capsys):
    root = make_folder(tmp_path / "d", classes=CLASSES + ["elm owl"])
    fails_cleanly(["train", "--dataset", str(root), "--set", *TINY], "elm owl", capsys, tmp_path / "run", [root])


def test_corrupt_image_named_before_any_work(good, tmp_path, capsys):
    bad = good / "train" / "oak owl" / "1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    fails_cleanly(["train", "--dataset", str(good), "--set", *TINY], "1.png", capsys, tmp_path / "run", [good])
    # asking to skip works and counts the file
    res = train(load_config("default", {"dataset": str(good), **parse_overrides(TINY), "skip_corrupt": True}),
                run_dir=tmp_path / "skip", progress=False)
    assert 0 <= res["top1"] <= 100


def test_checkpoint_of_another_model_is_refused(good, tmp_path, capsys):
    run = tmp_path / "r"
    train(load_config("default", {"dataset": str(good), **parse_overrides(TINY)}), run_dir=run, progress=False)
    other = make_folder(tmp_path / "other", classes=["a", "b"])
    assert main(["evaluate", "--dataset", str(other), "--ckpt-path", str(run / "checkpoint.pt")]) == 2
    assert "trained on 3 classes" in capsys.readouterr().err
    # resuming a run folder with different settings is refused, and the folder is left as it was
    before = snapshot(run)
    (run / "final.json").unlink()
    before = snapshot(run)
    with pytest.raises(MicroclipError, match="different settings"):
        train(load_config("default", {"dataset": str(good), **parse_overrides(TINY), "gamma": 0.3}), run_dir=run, progress=False)
    assert snapshot(run) == before
    # a trainable state with other shapes is refused by name
    from microclip.train import load_model
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    ck["trainable"]["head.weight"] = torch.zeros(5, ck["trainable"]["head.weight"].shape[1])
    torch.save(ck, tmp_path / "wrong.pt")
    with pytest.raises(MicroclipError, match="head.weight"):
        load_model(tmp_path / "wrong.pt", "cpu")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(good, tmp_path, monkeypatch):
    import microclip.train as T
    real, calls = T.self_training_loss, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        total, ce, fair = real(*a, **k)
        return (total * float("nan"), ce, fair) if calls["n"] == 3 else (total, ce, fair)

    monkeypatch.setattr(T, "self_training_loss", flaky)
    cfg = load_config("default", {"dataset": str(good), **parse_overrides(TINY), "epochs": 3})   # 2 steps per epoch
    with pytest.raises(MicroclipError, match=r"loss became nan at epoch 2, step 1"):
        train(cfg, run_dir=tmp_path / "nan", progress=False)
    assert torch.load(tmp_path / "nan" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    assert "nan" in json.loads((tmp_path / "nan" / "error.json").read_text())["error"]
    assert not (tmp_path / "nan" / "final.json").exists()


# --- the microworld with the tiny CLIP ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def microworld():
    from microclip.microworld import generate_microworld
    return generate_microworld()          # cached under data/microworld


def _mw_overrides():
    from microclip.backbone import project_weights
    try:
        project_weights("microclip-tiny", "microworld")
        weights = "microworld"
    except MicroclipError:                # before the tiny CLIP is published: same code path, random weights
        weights = None
    return {"dataset": "microworld", "pretrained": weights, "max_per_class": 6, "epochs": 3, "batch_size": 16,
            "n_crops": 2, "workers": 0, "device": "cpu", "eval_batch_size": 100}


def test_microworld_kill_and_resume_matches_uninterrupted(microworld, tmp_path):
    over = _mw_overrides()
    cfg = load_config("microworld", over)
    straight = train(cfg, run_dir=tmp_path / "straight", progress=False)
    again = train(cfg, run_dir=tmp_path / "again", progress=False)          # determinism: same seed, same device
    assert again["top1"] == straight["top1"] and again["per_class"] == straight["per_class"]

    run = tmp_path / "killed"
    code = (f"from microclip.core import load_config; from microclip.train import train; "
            f"train(load_config('microworld', {over!r}), run_dir={str(run)!r}, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 600
    while not (run / "checkpoint.pt").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)                                         # epoch 1 saved, epoch 2 under way
    proc.wait()
    assert not (run / "final.json").exists()
    resumed = train(cfg, run_dir=run, progress=False)
    assert resumed["top1"] == straight["top1"] and resumed["per_class"] == straight["per_class"]
    rows = lambda p: [json.loads(l) for l in (p / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows(run)[1:]] == [r["loss"] for r in rows(tmp_path / "straight")[1:]]
    assert [r["pl_acc_dka"] for r in rows(run)[1:]] == [r["pl_acc_dka"] for r in rows(tmp_path / "again")[1:]]
