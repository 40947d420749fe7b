"""Descriptions: loading the released files of all 13 benchmarks, fetch from a local file:// mirror, and
generation against a fake OpenAI-compatible server on 127.0.0.1. Nothing here touches the network."""
import json, shutil, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from microclip.core import MicroclipError
from microclip import datasets as D
from microclip import descriptions as S

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "microclip-release" / "descriptions"
if not REF.exists(): REF = Path("/work/shared/reference/microclip-release/descriptions")
needs_ref = pytest.mark.skipif(not REF.exists(), reason="reference release files absent")


@needs_ref
@pytest.mark.parametrize("name", D.BENCHMARKS)
def test_released_descriptions_load_in_class_order(name):
    spec = D.get_spec(name)
    d = S.dataset_descriptions(name, REF / spec.descriptions)
    assert list(d) == spec.classes
    assert all(len(v) >= 20 for v in d.values())
    raw = json.loads((REF / spec.descriptions).read_text())
    for c in spec.classes[:: max(1, len(spec.classes) // 7)]:      # the lists are the file's, untouched
        key = next(k for k in raw if D.name_key(k) == D.name_key(c))
        assert d[c] == [s.strip() for s in raw[key] if s.strip()]


@needs_ref
def test_released_checksums_and_mirror_fetch(tmp_path):
    for fname, digest in S.RELEASED.items(): assert S.sha256(REF / fname) == digest, fname
    p = S.fetch_descriptions("flowers", tmp_path, REF.as_uri())
    assert p == tmp_path / "flowers.json" and S.sha256(p) == S.RELEASED["flowers.json"]
    log = json.loads((tmp_path / "checksums.json").read_text())
    assert log["flowers.json"]["url"] == REF.as_uri() + "/flowers.json"
    assert S.fetch_descriptions("flowers", tmp_path, "file:///nonexistent") == p    # cached, verified, no download
    # a tampered mirror is refused and leaves no file behind
    bad = tmp_path / "bad"; bad.mkdir()
    d = json.loads((REF / "dtd.json").read_text()); d["banded"] = d["banded"][:-1]
    (bad / "dtd.json").write_text(json.dumps(d))
    with pytest.raises(MicroclipError, match="SHA-256"): S.fetch_descriptions("dtd", tmp_path / "c2", bad.as_uri())
    assert not (tmp_path / "c2" / "dtd.json").exists()
    # with the default path resolution, training finds the fetched file
    assert len(S.dataset_descriptions("flowers", cache_dir=tmp_path)) == 102


@needs_ref
def test_caltech_background_key_is_known_extra(tmp_path):
    spec = D.get_spec("caltech101")
    with pytest.raises(MicroclipError, match="background"):
        S.load_descriptions(REF / "caltech101.json", spec.classes)
    assert len(S.load_descriptions(REF / "caltech101.json", spec.classes, ignore=spec.ignore_keys)) == 100


def test_validation_reports_every_problem_at_once(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps({"Blue Jay": ["x"], "blue_jay": ["y"], "Owl": [], "Dodo": ["z"]}))
    with pytest.raises(MicroclipError) as e:
        S.load_descriptions(f, ["blue jay", "owl", "wren"])
    msg = str(e.value)
    for part in ("no descriptions: ['wren']", "match no class: ['Dodo']", "'Blue Jay' and 'blue_jay'", "empty list: ['owl']"):
        assert part in msg, part
    with pytest.raises(MicroclipError, match="duplicate names"): S.load_descriptions(f, ["owl", "owl"])
    f.write_text("[1, 2]")
    with pytest.raises(MicroclipError, match="must hold an object"): S.load_descriptions(f, ["owl"])
    f.write_text(json.dumps({"Owl": "not a list"}))
    with pytest.raises(MicroclipError, match="not lists of strings"): S.load_descriptions(f, ["owl"])


def test_custom_folder_descriptions(tmp_path):
    root = tmp_path / "myset"; (root / "train" / "a_b").mkdir(parents=True)
    (root / "classes.txt").write_text("A B\n")
    with pytest.raises(MicroclipError, match="descriptions.json does not exist"): S.dataset_descriptions(str(root))
    assert S.dataset_descriptions(str(root), fallback_to_templates=True)["A B"][0] == "a photo of a A B."
    (root / "descriptions.json").write_text(json.dumps({"a_b": ["An A B."]}))
    assert S.dataset_descriptions(str(root)) == {"A B": ["An A B."]}


class _LLM(BaseHTTPRequestHandler):
    script = []            # status codes to return before answering normally
    calls = []

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _LLM.calls.append((self.path, req))
        code = _LLM.script.pop(0) if _LLM.script else 200
        self.send_response(code); self.send_header("Content-Type", "application/json"); self.end_headers()
        text = f"answer {len(_LLM.calls)} to {req['messages'][-1]['content']}"
        self.wfile.write(json.dumps({"choices": [{"message": {"content": text}}]}).encode() if code == 200 else b"{}")

    def log_message(self, *a): pass


@pytest.fixture
def llm():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _LLM)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _LLM.script, _LLM.calls = [], []
    yield f"http://127.0.0.1:{srv.server_port}/v1"
    srv.shutdown(); srv.server_close()


def test_generate_retries_and_resumes(tmp_path, llm):
    out = tmp_path / "desc.json"
    _LLM.script = [429, 502]
    d = S.generate_descriptions(["Wren", "Owl"], out, llm, "tiny", "k", n_per_class=2, backoff=0.001,
                                questions=["What does a {} look like?"])
    assert _LLM.calls[0][0] == "/v1/chat/completions" and _LLM.calls[0][1]["model"] == "tiny"
    assert len(_LLM.calls) == 6 and [len(v) for v in d.values()] == [2, 2]
    assert json.loads(out.read_text()) == d
    # interrupted: a 400 is not retried; progress stays in the cache and the next run continues from there
    out2 = tmp_path / "more.json"; _LLM.calls = []
    _LLM.script = [200, 200, 200, 400]
    with pytest.raises(MicroclipError, match="3 of 6 descriptions are saved"):
        S.generate_descriptions(["A", "B", "C"], out2, llm, "tiny", "k", n_per_class=2)
    assert not out2.exists() and len(_LLM.calls) == 4
    _LLM.calls = []
    d2 = S.generate_descriptions(["A", "B", "C"], out2, llm, "tiny", "k", n_per_class=2)
    assert len(_LLM.calls) == 3 and all(len(v) == 2 for v in d2.values())
    assert S.load_descriptions(out2, ["C", "B", "A"]) == {k: d2[k] for k in ("C", "B", "A")}


def test_generate_gives_up_after_retries(tmp_path, llm):
    _LLM.script = [503] * 3
    with pytest.raises(MicroclipError, match="failed 3 times"):
        S.generate_descriptions(["A"], tmp_path / "x.json", llm, "tiny", "", n_per_class=1, retries=2, backoff=0.001)


def test_generate_uses_environment(tmp_path, llm, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", llm); monkeypatch.setenv("MICROCLIP_LLM_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    S.generate_descriptions(["A"], tmp_path / "y.json", n_per_class=1)
    assert _LLM.calls[-1][1]["model"] == "env-model"
    monkeypatch.delenv("OPENAI_BASE_URL"); monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(MicroclipError, match="no API key"):
        S.generate_descriptions(["A"], tmp_path / "z.json", n_per_class=1)
