"""Issue 19: results you can trust — run identity covers every input, a run folder only serves its own run, images of
every PIL mode keep their range, files get the user's umask, and interruptions say where the run stopped."""
import json
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from microclip.cli import main
from microclip.core import MicroclipError, load_config, parse_overrides, umask
from microclip import runs as R
from microclip import train as T
from microclip.runs import default_run_dir, run_name
from microclip.train import train

from test_reliability import TINY, make_folder


def cfg_of(folder, **kw):
    return load_config("default", {"dataset": str(folder), **parse_overrides(TINY), **kw})


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROCLIP_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


# --- 1. a run's identity covers the dataset's content --------------------------------------------------------------

def test_edited_descriptions_or_image_give_a_new_run_and_the_old_one_is_stale(tmp_path, runs, capsys):
    from microclip.reports import load_runs
    data = make_folder(tmp_path / "data")
    cfg = cfg_of(data)
    first = default_run_dir(cfg)
    train(cfg, progress=False)
    assert load_runs(runs).status.tolist() == ["finished"]
    desc = json.loads((data / "descriptions.json").read_text())
    desc["ash owl"][0] = "a grey owl with ash-coloured wings."
    (data / "descriptions.json").write_text(json.dumps(desc))
    assert default_run_dir(cfg) != first                       # a new folder: the old final.json is not returned
    df = load_runs(runs)
    assert df.status.tolist() == ["stale"] and df.stale_reason[0] == "descriptions changed", df.stale_reason[0]
    assert main(["report", "--runs", str(runs), "--out", str(tmp_path / "reports"), "--no-figures"]) == 0
    assert f"stale: data/{first.name}: descriptions changed" in capsys.readouterr().out      # `make report` says why
    second = default_run_dir(cfg)
    img = data / "train" / "elm owl" / "1.png"                  # one image edited in place (same name, same folder)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    os.utime(img, ns=(1, 1))
    R._CONTENT_CACHE.clear()                                    # a new process: the folder is scanned again
    assert default_run_dir(cfg) not in (first, second)
    assert "image files changed" in load_runs(runs).stale_reason[0]


def test_generated_dataset_keeps_its_run_names_until_edited(tmp_path):
    data = make_folder(tmp_path / "gen")
    (data / "meta.json").write_text('{"params": 1}')            # as the microworld generator writes it
    cfg = cfg_of(data)
    assert set(R.run_identity(cfg)) == {"dataset"}              # no content record yet: named as before content tracking
    name = run_name(cfg)
    R.record_content(cfg)                                       # what generate_microworld does when done
    assert run_name(cfg) == name
    (data / "templates.txt").write_text("a blurry photo of a {}.\n")
    assert run_name(cfg) != name and "content" in R.run_identity(cfg)


# --- 3. a run folder is only reused by the run it was made for ------------------------------------------------------

def test_run_dir_of_another_dataset_is_refused(tmp_path, capsys):
    a, b = make_folder(tmp_path / "a"), make_folder(tmp_path / "b", classes=["x owl", "y owl", "z owl"])
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(a), "--run-dir", str(run), "--set", *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--dataset", str(b), "--run-dir", str(run), "--set", *TINY]) == 2
    err = capsys.readouterr().err
    assert "holds a run with different settings" in err and "dataset=" in err and "--no-resume" in err, err


def test_run_dir_with_changed_inputs_is_refused(tmp_path):
    data = make_folder(tmp_path / "d")
    run = tmp_path / "run"
    train(cfg_of(data), run_dir=run, progress=False)
    (data / "classes.txt").write_text("ash owl\nelm owl\noak owl\n\n")   # same classes, same content ...
    R._CONTENT_CACHE.clear()
    train(cfg_of(data), run_dir=run, progress=False)                    # ... so the run is still this run's
    (data / "descriptions.json").write_text(json.dumps({c: [f"an {c}."] for c in ["ash owl", "elm owl", "oak owl"]}))
    with pytest.raises(MicroclipError, match="descriptions changed"):
        train(cfg_of(data), run_dir=run, progress=False)


def test_no_resume_retires_the_old_results_first(tmp_path):
    data = make_folder(tmp_path / "d")
    run = tmp_path / "run"
    old = train(cfg_of(data), run_dir=run, progress=False)
    (run / "final.json").write_text(json.dumps({**old, "top1": -1.0}))    # mark the old numbers
    assert train(cfg_of(data, epochs=2), run_dir=run, resume=False, progress=False, stop_after=1) == {"stopped_after": 1}
    assert not (run / "final.json").exists(), "a restart killed after one epoch must not leave the old final.json"
    retired = list((run / "retired").glob("*/final.json"))
    assert len(retired) == 1 and json.loads(retired[0].read_text())["top1"] == -1.0
    new = train(cfg_of(data, epochs=2), run_dir=run, progress=False)       # resumes the new run, not the old numbers
    assert new["top1"] != -1.0 and torch.load(run / "checkpoint.pt", weights_only=False)["epoch"] == 2
    (data / "test" / "ash owl" / "0.png").write_bytes(b"broken")          # evaluate: --skip-corrupt, as train has
    assert main(["evaluate", "--dataset", str(data), "--ckpt-path", str(run / "checkpoint.pt")]) == 2
    assert main(["evaluate", "--dataset", str(data), "--ckpt-path", str(run / "checkpoint.pt"), "--skip-corrupt"]) == 0


def test_train_takes_the_study_lock(tmp_path, capsys):
    data, run = make_folder(tmp_path / "d"), tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))   # a live holder
    assert main(["train", "--dataset", str(data), "--run-dir", str(run), "--set", *TINY]) == 2
    assert "is in use by process" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["run.lock"]          # nothing trained, nothing written
    (run / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 12345}))  # holder died
    assert main(["train", "--dataset", str(data), "--run-dir", str(run), "--set", *TINY]) == 0
    assert not (run / "run.lock").exists() and (run / "final.json").exists()


# --- 2. images of every PIL mode keep their range ------------------------------------------------------------------

def test_16bit_png_keeps_its_contrast(tmp_path):
    from microclip.datasets import read_image
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "cam.png")
    x = np.asarray(read_image(tmp_path / "cam.png")).astype(float)
    assert x.min() == 0 and x.max() == 255 and x.std() > 60            # convert("RGB"): mean 254, std 10


def test_decompression_bomb_is_a_bad_image(tmp_path, monkeypatch):
    from microclip.datasets import ImageList
    Image.new("RGB", (50, 50)).save(tmp_path / "big.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)                   # big.png is "a bomb", ok.png is not
    ds = ImageList([(tmp_path / "big.png", 0), (tmp_path / "ok.png", 0)], ["a"], skip_corrupt=True)
    with pytest.warns(UserWarning, match="big.png"):
        assert ds.scan() == [tmp_path / "big.png"] and len(ds) == 1


# --- 6. files get the user's umask; a killed write's temporary file is cleaned up -------------------------------------

def test_files_get_the_umask_and_stale_tmp_files_go(tmp_path):
    data, run = make_folder(tmp_path / "d"), tmp_path / "run"
    train(cfg_of(data, epochs=2), run_dir=run, progress=False, stop_after=1)
    want = 0o666 & ~umask()
    for f in ("config.yaml", "env.json", "metrics.jsonl", "checkpoint.pt"):
        assert (run / f).stat().st_mode & 0o777 == want, f
    (run / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # a kill -9 during torch.save
    train(cfg_of(data, epochs=2), run_dir=run, progress=False)
    assert not list(run.glob(".*.tmp"))


# --- 8. one message instead of a traceback -------------------------------------------------------------------------

def test_last_update_that_breaks_the_weights_is_an_error(tmp_path):
    data, run = make_folder(tmp_path / "d"), tmp_path / "run"
    with pytest.raises(MicroclipError, match="non-finite in epoch 1.*no checkpoint was saved yet"):
        train(cfg_of(data, lr=float("inf"), batch_size=12), run_dir=run, progress=False)   # one step
    assert not (run / "final.json").exists() and not (run / "checkpoint.pt").exists()


def test_truncated_checkpoint_and_corrupt_final_json(tmp_path, capsys):
    from microclip.reports import load_runs
    data, run = make_folder(tmp_path / "d"), tmp_path / "runs" / "d" / "run"
    train(cfg_of(data, epochs=2), run_dir=run, progress=False, stop_after=1)
    ck = run / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[:1000])
    with pytest.raises(MicroclipError, match="checkpoint.pt cannot be read.*delete it"):
        train(cfg_of(data, epochs=2), run_dir=run, progress=False)
    (run / "final.json").write_text('{"top1": 5')                          # cut short
    with pytest.raises(MicroclipError, match="final.json is corrupt"):
        train(cfg_of(data, epochs=2), run_dir=run, progress=False)
    df = load_runs(tmp_path / "runs")
    assert df.status.tolist() == ["unreadable"] and "final.json cannot be read" in df.error[0]


def test_ctrl_c_says_where_the_run_stopped(tmp_path, monkeypatch, capsys):
    data, run = make_folder(tmp_path / "d"), tmp_path / "run"
    real = T._epoch
    def interrupted(*a, **k):
        if a[5] == 1: raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(T, "_epoch", interrupted)
    assert main(["train", "--dataset", str(data), "--run-dir", str(run), "--set", *TINY, "epochs=3"]) == 130
    err = capsys.readouterr().err
    assert "stopped during epoch 2 of 3" in err and "checkpoint of epoch 1 is kept" in err and "rerun" in err, err
    assert json.loads((run / "error.json").read_text())["completed_epochs"] == 1


def test_unwritable_runs_folder_and_bad_top_k(tmp_path, capsys):
    data = make_folder(tmp_path / "d")
    (tmp_path / "file").write_text("not a folder")
    assert main(["train", "--dataset", str(data), "--run-dir", str(tmp_path / "file" / "run"), "--set", *TINY]) == 2
    assert "cannot create the run folder" in capsys.readouterr().err
    assert main(["predict", "--ckpt-path", str(tmp_path / "x.pt"), str(tmp_path), "--top-k", "-1"]) == 2
    assert "--top-k must be at least 1" in capsys.readouterr().err


# --- 5. custom data as users have it; 6. data check runs train's checks; 7. predict batches and reports failures ----

TEXTILE = {"nominal": "defect-free fabric", "global": "global defect", "local": "local defect"}


def textile(root, n=6):
    """Folders named by the user's ids, a mapping to class names, descriptions keyed by the names, one .jfif photo."""
    rng = np.random.default_rng(1)
    for k, (folder, name) in enumerate(TEXTILE.items()):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            img[8:32, 8:32, k] = 220
            Image.fromarray(img).save(root / folder / f"{folder}_{i}.png")
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(root / "local" / "phone.jfif", format="JPEG")
    (root / "local" / "notes.txt").write_text("shot on line 3")
    (root / "classes.json").write_text(json.dumps(TEXTILE))
    (root / "descriptions.json").write_text(json.dumps({n: [f"a photo of {n}.", f"woven textile showing {n}."]
                                                        for n in TEXTILE.values()}))
    return root


def test_textile_layout_checks_trains_evaluates_and_predicts_without_renaming(tmp_path, capsys):
    data, run = textile(tmp_path / "textile"), tmp_path / "run"
    assert main(["data", "check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "ignored 1 file(s) that are not images (.txt)" in out and "notes.txt" in out, out
    assert main(["train", "--dataset", str(data), "--run-dir", str(run), "--set", *TINY]) == 0
    final = json.loads((run / "final.json").read_text())
    env = json.loads((run / "env.json").read_text())
    assert torch.load(run / "checkpoint.pt", weights_only=False)["classes"] == list(TEXTILE.values())
    assert env["ignored_files"] == [str(data / "local" / "notes.txt")]
    capsys.readouterr()
    assert main(["evaluate", "--dataset", str(data), "--ckpt-path", str(run / "checkpoint.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(final["top1"])
    (data / "nominal" / "broken.png").write_bytes(b"not a png")
    lst = tmp_path / "list.txt"
    lst.write_text(f"{data / 'global' / 'global_0.png'}\n")
    rc = main(["predict", "--ckpt-path", str(run / "checkpoint.pt"), str(data / "nominal"), str(data / "local"), str(lst),
               "--top-k", "2", "--format", "json", "--batch-size", "4"])
    cap = capsys.readouterr()
    rows = json.loads(cap.out)
    assert rc == 2 and "1 of 15 images could not be read" in cap.err and "broken.png" in cap.err, cap.err
    assert len({r["image"] for r in rows}) == 14 and {r["class"] for r in rows} <= set(TEXTILE.values())
    assert any(r["image"].endswith("phone.jfif") for r in rows)


def test_data_check_runs_the_checks_train_runs(tmp_path, capsys):
    data = make_folder(tmp_path / "d")
    for f in (data / "test" / "oak owl").iterdir(): f.unlink()      # an empty class folder
    assert main(["data", "check", str(data)]) == 2                   # not ready: non-zero exit
    err = capsys.readouterr().err
    assert "NOT READY" in err and "without a usable image" in err and "oak owl" in err, err
    assert main(["train", "--dataset", str(data), "--run-dir", str(tmp_path / "r"), "--set", *TINY]) == 2
    assert "without a usable image" in capsys.readouterr().err       # the same check, the same words
    assert not (tmp_path / "r").exists()
