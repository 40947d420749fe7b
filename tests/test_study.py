"""The study pipeline: experiment notebooks under papermill (smoke mode), nbdev_clean keeps their `parameters` tag,
the runner isolates failures, resumes killed runs and dispatches through submitit's local executor."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from microclip.core import MicroclipError, load_config, project_root
from microclip.study import EXPERIMENTS, plan_study, run_status, run_study
from microclip.train import train

NBS = project_root() / "nbs"
SMOKE = {"pretrained": None, "max_per_class": 1, "epochs": 1, "batch_size": 8, "n_crops": 2, "workers": 0,
         "eval_batch_size": 64}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROCLIP_RUNS", str(tmp_path / "runs"))   # inherited by the papermill kernels
    return tmp_path / "runs"


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("name", sorted(EXPERIMENTS.values()))
def test_template_shape_survives_nbdev_clean(name, tmp_path):
    p = tmp_path / name
    shutil.copy(NBS / name, p)
    exe = Path(sys.executable).parent / "nbdev_clean"          # the environment's own nbdev (CI has no activated venv)
    subprocess.run([str(exe if exe.exists() else shutil.which("nbdev_clean")), "--fname", str(p)],
                   check=True, cwd=project_root(), capture_output=True)
    nb = nbformat.read(p, as_version=4)
    tagged = [c for c in _code(nb) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for c in _code(nb):   # templates import from microclip and define nothing reusable
        assert not any(l.startswith(("def ", "class ")) for l in c.source.splitlines()), c.source
    assert nb.cells[0].cell_type == "raw" and "skip_exec: true" in nb.cells[0].source   # nbdev_test leaves them to pytest


@pytest.mark.parametrize("name", sorted(EXPERIMENTS.values()))
def test_experiment_notebook_smoke(name, runs, tmp_path):
    import papermill as pm
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NBS / name), str(out), cwd=str(tmp_path), progress_bar=False)
    finals = list(runs.glob("microworld/*/final.json"))
    assert len(finals) == 1
    res = json.loads(finals[0].read_text())
    assert res["dataset"] == "microworld" and set(res["zeroshot"]) == {"hand-crafted", "description mean", "frozen LLM head"}


def test_failed_run_is_isolated_and_recorded_submitit_local(runs):
    # one job per run folder through submitit's local executor (the SLURM code path without a cluster)
    res = run_study(["nosuchdataset", "microworld"], experiment="zeroshot", config="microworld", overrides=SMOKE,
                    executor="submitit-local", progress=False)
    by = {Path(r["run"]).parent.name: r for r in res}
    assert by["nosuchdataset"]["status"] == "failed" and "nosuchdataset" in by["nosuchdataset"]["error"]
    assert by["microworld"]["status"] == "finished"
    bad = Path(by["nosuchdataset"]["run"])
    err = json.loads((bad / "error.json").read_text())
    assert "MicroclipError" in err["error"] and (bad / "notebook.ipynb").exists() and not (bad / "final.json").exists()
    again = run_study(["microworld"], experiment="zeroshot", config="microworld", overrides=SMOKE, progress=False)
    assert again == [{"run": by["microworld"]["run"], "status": "finished", "skipped": True}]
    assert list((runs / "_submitit").iterdir())   # submitit's job folders (logs, pickles)


def test_killed_run_resumes(runs):
    over = {**SMOKE, "epochs": 2, "max_per_class": 1}
    spec, = plan_study(["microworld"], [0], "adapt", "microworld", over, methods=("microclip",))
    cfg = load_config("microworld", {**over, "seed": 0, "method": "microclip"})
    assert train(cfg, run_dir=spec.run_dir, progress=False, stop_after=1) == {"stopped_after": 1}   # "killed" after epoch 1
    assert run_status(spec.run_dir) == "unfinished"
    res, = run_study(["microworld"], [0], "adapt", "microworld", over, methods=("microclip",), progress=False)
    assert res["status"] == "finished"
    rows = [json.loads(l) for l in (Path(spec.run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert json.loads((Path(spec.run_dir) / "study.json").read_text())["requests"][0]["experiment"] == "adapt"


@pytest.mark.slow
def test_train_run_under_torchrun_two_processes(runs):
    # the multi-GPU path of a study run, here as 2 CPU processes (gloo); needs train()'s torchrun support
    from microclip.study import train_run
    cfg = load_config("microworld", {**SMOKE, "device": "cpu", "batch_size": 8})
    spec, = plan_study(["microworld"], [0], "adapt", "microworld", {**SMOKE, "device": "cpu", "batch_size": 8}, methods=("microclip",))
    final = train_run(cfg, spec.run_dir, nproc=2)
    assert 0 <= final["top1"] <= 100 and run_status(spec.run_dir) == "finished"


def test_local_parallel_runs_with_their_share_of_threads(runs, monkeypatch):
    # two seeds at once; each kernel inherits the pool's OMP_NUM_THREADS (not this process's), which env.json records
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    res = run_study(["microworld"], [0, 1], "adapt", "microworld", SMOKE, methods=("baseline",), progress=False, parallel=2,
                    threads=1)
    assert [r["status"] for r in res] == ["finished", "finished"]
    assert [Path(r["run"]).name.split("-s")[-1][0] for r in res] == ["0", "1"]       # in the plan's order
    assert [json.loads((Path(r["run"]) / "env.json").read_text())["threads"] for r in res] == [1, 1]
    again = run_study(["microworld"], [0, 1], "adapt", "microworld", SMOKE, methods=("baseline",), progress=False, parallel=2)
    assert all(r.get("skipped") for r in again)


def _kernels_of(runs):
    "pids of live kernels started for runs under `runs` (they inherit MICROCLIP_RUNS)"
    import psutil
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "ipykernel_launcher" in " ".join(p.info["cmdline"] or []) and p.environ().get("MICROCLIP_RUNS") == str(runs):
                out.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied): pass
    return out


def _gone(pid):
    import psutil
    return not psutil.pid_exists(pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_parallel_study_leaves_nothing_running(runs, sig):
    # stop the study while its two pool processes run seeds 0-1: they and their kernels end, and seed 2 never starts
    # (before: after a SIGTERM to the study, each pool process finished its run and took the next one from the queue)
    code = ("from microclip.study import run_study; "
            f"run_study(['microworld'], [0, 1, 2], 'adapt', 'microworld', {SMOKE!r}, methods=('baseline',), progress=False, "
            "parallel=2, threads=1)")
    study, pool, kernels = subprocess.Popen([sys.executable, "-c", code]), [], []
    try:
        locks, t0 = lambda: list(runs.glob("microworld/*/run.lock")), time.time()
        while len(locks()) < 2 or len(_kernels_of(runs)) < 2:     # both runs started, their kernels up
            assert study.poll() is None and time.time() - t0 < 300, "the study did not start two runs"
            time.sleep(0.2)
        pool, kernels = [json.loads(p.read_text())["pid"] for p in locks()], _kernels_of(runs)
        study.send_signal(sig)
        study.wait(60)
        t0 = time.time()
        # after SIGTERM the study ends its pool processes and their kernels itself; after SIGKILL Linux ends the pool
        # processes, and each kernel notices its parent is gone (ipykernel's poller; one that failed to start, e.g.
        # on a port clash between two kernels starting at once, hangs unseen: so only the pool is checked there)
        watched = pool + kernels if sig == signal.SIGTERM else pool
        while not all(map(_gone, watched)) and time.time() - t0 < 30: time.sleep(0.5)
        assert [p for p in watched if not _gone(p)] == []
        third, = plan_study(["microworld"], [2], "adapt", "microworld", SMOKE, methods=("baseline",))
        assert not (Path(third.run_dir) / "notebook.ipynb").exists()
    finally:                                                      # a failing check leaves nothing running either
        study.kill()
        for p in pool + _kernels_of(runs):
            if not _gone(p): os.kill(p, signal.SIGKILL)


def test_a_stopped_study_ends_what_its_pool_processes_started():
    # a kernel runs in a session of its own (jupyter_client) and one hung in its start-up never looks at its parent,
    # so the study ends the whole tree of each pool process, not just the pool process
    from microclip.study import _terminate_trees
    code = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
            "start_new_session=True); print(c.pid, flush=True); time.sleep(120)")
    pool = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    kernel = int(pool.stdout.readline())
    try:
        _terminate_trees([pool])
        pool.wait(10)
        t0 = time.time()
        while not _gone(kernel) and time.time() - t0 < 10: time.sleep(0.1)
        assert _gone(kernel)
    finally:
        pool.kill()
        if not _gone(kernel): os.kill(kernel, signal.SIGKILL)


@pytest.mark.parametrize("kw, culprit", [(dict(parallel=0), "parallel"), (dict(parallel=2, threads=0), "threads"),
                                         (dict(threads=2), "threads=2 is the share"),
                                         (dict(parallel=2, executor="slurm"), "executor='slurm'"),
                                         (dict(parallel=2, nproc=2), "nproc=2")])
def test_parallel_refuses_what_it_cannot_do(runs, kw, culprit):
    with pytest.raises(MicroclipError, match=culprit):
        run_study(["microworld"], [0], "zeroshot", "microworld", SMOKE, progress=False, **kw)
    assert not runs.exists() or not list(runs.glob("microworld/*"))                  # nothing started
