"""Each of the 13 benchmarks: a tiny fake copy of its on-disk layout, loaded through the registry.

Checks class count and order (labels follow microclip's class list, whatever order the file system lists
folders in), the split logic and sizes, `check_dataset`, and the class names/templates against the released
files in ../shared/reference/microclip-release when that folder exists.
"""
import io, json, os, shutil, warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from microclip.core import MicroclipError
from microclip import datasets as D

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "microclip-release"
if not REF.exists(): REF = Path("/work/shared/reference/microclip-release")

_buf = io.BytesIO(); Image.new("RGB", (4, 4), (10, 120, 30)).save(_buf, "PNG"); PNG = _buf.getvalue()


def put(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    return path


def touch(path: Path):
    "An empty file: the download path links files and never decodes them."
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def tree(root: Path, split: str, folders: list[str], n: list[int]):
    "n[i] images in root/split/folders[i]; returns {folder: label}."
    for i, (f, k) in enumerate(zip(folders, n)):
        for j in range(k): put(root / split / f / f"im{j}.png")
    return {f: i for i, f in enumerate(folders)}


def counts(C, base, extra_every=7):
    "A few images per class, more for some, so split sizes are not trivially uniform."
    return [base + (1 if i % extra_every == 0 else 0) for i in range(C)]


# folder name of class c in each benchmark's prepared layout
FOLDER = {
    "birdsnap": lambda i, c: c.replace(" ", "_"),
    "caltech101": lambda i, c: {"airplane": "airplanes", "face": "Faces", "leopard": "Leopards"}.get(c, c),
    "cars": lambda i, c: f"{i:03d}_" + c.replace(" ", "_").replace("/", "_"),
    "dtd": lambda i, c: c,
    "eurosat": lambda i, c: {v: k for k, v in D.EUROSAT_FOLDERS.items()}.get(c, c),
    "fgvc": lambda i, c: c.replace("/", "-").replace(" ", "-"),
    "food101": lambda i, c: c,
    "pets": lambda i, c: c.replace(" ", "_"),
    "resisc45": lambda i, c: c.replace(" ", "_"),
    "ucf101": lambda i, c: c.replace(" ", ""),
}
SPLIT_DIRS = {"dtd": ("trainval", "test"), "eurosat": ("train", "val"), "ucf101": ("train", "val")}


def check_labels(ds, expected: dict, key):
    "Every sample's label is the one its folder was built for."
    for p, y in ds.samples: assert y == expected[key(p)], (p, y)


@pytest.mark.parametrize("name", sorted(FOLDER))
def test_tree_benchmark(tmp_path, name):
    spec = D.get_spec(name); classes = spec.classes; C = len(classes)
    folders = [FOLDER[name](i, c) for i, c in enumerate(classes)]
    tr_dir, te_dir = SPLIT_DIRS.get(name, ("train", "test"))
    n_tr, n_te = counts(C, 2), counts(C, 1, 5)
    # folders are created in reverse order so directory listing order cannot stand in for label order
    order = list(reversed(range(C)))
    for i in order:
        tree(tmp_path, tr_dir, [folders[i]], [n_tr[i]]); tree(tmp_path, te_dir, [folders[i]], [n_te[i]])
    want = {f: i for i, f in enumerate(folders)}
    tr, te = D.load_split(name, "train", root=tmp_path), D.load_split(name, "test", root=tmp_path)
    assert (len(tr.classes), tr.classes) == (C, classes)
    assert (len(tr), len(te)) == (sum(n_tr), sum(n_te))
    check_labels(tr, want, lambda p: p.parent.name); check_labels(te, want, lambda p: p.parent.name)
    img, y, i = tr[3]
    assert img.size == (4, 4) and y == tr.samples[3][1] and i == 3
    rep = D.check_dataset(name, tmp_path)
    assert rep.ok and rep.sizes == {"train": sum(n_tr), "test": sum(n_te)}, str(rep)
    if spec.sizes.get("train"): assert any("published split" in n for n in rep.notes)


def test_tree_benchmark_errors(tmp_path):
    classes = D.get_spec("dtd").classes
    tree(tmp_path, "trainval", classes[:-1] + ["not_a_texture"], [1] * len(classes))
    tree(tmp_path, "test", classes, [1] * len(classes))
    with pytest.raises(MicroclipError, match="not_a_texture"): D.load_split("dtd", "train", root=tmp_path)
    rep = D.check_dataset("dtd", tmp_path)
    assert not rep.ok and "not_a_texture" in rep.problems[0]
    rep = D.check_dataset("dtd", tmp_path / "nowhere")
    assert rep.missing == [str(tmp_path / "nowhere" / "trainval"), str(tmp_path / "nowhere" / "test")]


def test_cub_native_files(tmp_path):
    classes = D.get_spec("cub").classes
    lines, flags, want, k = [], [], {}, 0
    for i, c in enumerate(classes):
        folder = f"{i + 1:03d}." + c.replace(" ", "_").replace("-", "_")
        for j in range(3):                       # 2 train, 1 test per class
            k += 1; rel = f"{folder}/{folder[4:]}_{j}.jpg"
            put(tmp_path / "images" / rel); lines.append(f"{k} {rel}"); flags.append(f"{k} {int(j < 2)}")
            want[rel] = i
    # the files list images in a shuffled order: labels must still come from the NNN prefix
    rng = np.random.default_rng(0); perm = rng.permutation(len(lines))
    (tmp_path / "images.txt").write_text("\n".join(lines[p] for p in perm) + "\n")
    (tmp_path / "train_test_split.txt").write_text("\n".join(flags) + "\n")
    tr, te = D.load_split("cub", "train", tmp_path), D.load_split("cub", "test", tmp_path)
    assert (len(tr.classes), len(tr), len(te)) == (200, 400, 200)
    check_labels(tr, want, lambda p: f"{p.parent.name}/{p.name}")
    assert tr.classes[0] == "Black-footed Albatross" and tr.classes[21] == "Chuck-will Widow"
    rep = D.check_dataset("cub", tmp_path)
    assert rep.ok and rep.notes == ["train has 400 images; the published split has 5994",
                                    "test has 200 images; the published split has 5794"]


def test_flowers_coop_split(tmp_path):
    classes = D.get_spec("flowers").classes
    split, k = {"train": [], "val": [], "test": []}, 0
    for y, c in enumerate(classes):
        for s, n in (("train", 2), ("val", 1), ("test", 1)):
            for _ in range(n):
                k += 1; img = f"image_{k:05d}.jpg"; put(tmp_path / "jpg" / img); split[s].append([img, y, c])
    (tmp_path / "split_zhou_OxfordFlowers.json").write_text(json.dumps(split))
    tr, te = D.load_split("flowers", "train", tmp_path), D.load_split("flowers", "test", tmp_path)
    assert (len(tr.classes), len(tr), len(te)) == (102, 204, 102)   # val is not used, as in the released code
    assert tr.samples[0] == (tmp_path / "jpg" / "image_00001.jpg", 0)
    with pytest.raises(MicroclipError, match="val"): D.load_split("flowers", "val", tmp_path)
    # a split file whose label order differs from ours is refused
    split["train"][0][2] = "sunflower"
    (tmp_path / "split_zhou_OxfordFlowers.json").write_text(json.dumps(split))
    with pytest.raises(MicroclipError, match="'sunflower'"): D.load_split("flowers", "train", tmp_path)


def test_sun397_file_lists(tmp_path):
    classes = D.get_spec("sun397").classes
    rng = np.random.default_rng(1)
    n = rng.integers(2, 6, size=len(classes))
    lists = {"train": ([], []), "test": ([], [])}
    for y, (c, k) in enumerate(zip(classes, n)):
        sub = c.replace(" (", "/").replace(")", "").replace(" ", "_")
        files = [put(tmp_path / "SUN397" / c[0] / sub / f"sun_{y}_{j}.jpg") for j in range(k)]
        n_tr = int(round(0.7 * k))
        for s, part in (("train", files[:n_tr]), ("test", files[n_tr:])):
            for f in part:
                # lists written on another machine: absolute paths that do not exist here
                lists[s][0].append("/datasets/prep/SUN397/" + str(f.relative_to(tmp_path / "SUN397")))
                lists[s][1].append(y)
    for s, (paths, labels) in lists.items():
        np.save(tmp_path / f"{s}_images.npy", np.array(paths)); np.save(tmp_path / f"{s}_labels.npy", np.array(labels))
    tr, te = D.load_split("sun397", "train", tmp_path), D.load_split("sun397", "test", tmp_path)
    assert (len(tr.classes), len(tr), len(te)) == (397, len(lists["train"][0]), len(lists["test"][0]))
    assert all(p.exists() for p, _ in tr.samples + te.samples)
    assert tr.targets == lists["train"][1]
    assert tr[0][0].size == (4, 4)
    (tmp_path / "test_labels.npy").unlink()
    rep = D.check_dataset("sun397", tmp_path)
    assert rep.missing == [str(tmp_path / "test_labels.npy")]


def test_sun397_published_sizes_follow_the_rule():
    "76,129 / 21,758 are the script's rule applied to the official per-class counts (total 108,754)."
    spec = D.get_spec("sun397")
    assert spec.sizes == {"train": 76129, "test": 21758}


def test_microworld_and_custom_folder(tmp_path):
    root = tmp_path / "microworld"
    classes = ["Crested Finch", "Blue Warbler", "Red Kite"]
    (root).mkdir(); (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for split, n in (("train", 3), ("test", 2)):
        tree(root, split, [c.replace(" ", "_") for c in reversed(classes)], [n] * 3)
    os.environ["MICROCLIP_DATA"] = str(tmp_path)
    try:
        tr = D.load_split("microworld", "train")
        assert tr.classes == classes and len(tr) == 9
        assert [y for p, y in tr.samples if p.parent.name == "Red_Kite"] == [2, 2, 2]
        assert D.check_dataset("microworld").ok
        assert "bird" in D.get_spec("microworld").get_templates()[0]
    finally:
        del os.environ["MICROCLIP_DATA"]


def test_corrupt_image_in_a_benchmark(tmp_path):
    classes = D.get_spec("eurosat").classes
    folders = [FOLDER["eurosat"](i, c) for i, c in enumerate(classes)]
    tree(tmp_path, "train", folders, [2] * 10); tree(tmp_path, "val", folders, [1] * 10)
    bad = tmp_path / "train" / "Forest" / "im0.png"; bad.write_bytes(PNG[:40])
    ds = D.load_split("eurosat", "train", tmp_path)
    i = [p for p, _ in ds.samples].index(bad)
    with pytest.raises(MicroclipError, match="im0.png"): ds[i]
    ds = D.load_split("eurosat", "train", tmp_path, skip_corrupt=True)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        _, y, j = ds[i]
        assert (y, j, ds.skipped) == (ds.samples[i + 1][1], i + 1, [bad])
        assert ds.scan() == [bad] and len(ds) == 19


def test_class_keys_unique_and_registry():
    assert sorted(D.BENCHMARKS) == [n for n in D.list_datasets() if n != "microworld"]
    for n in D.BENCHMARKS:
        cl = D.get_spec(n).classes
        assert len({D.name_key(c) for c in cl}) == len(cl), n
        assert D.get_spec(n).descriptions == {"fgvc": "fgvc.json"}.get(n, f"{n}.json")


def test_sorted_folder_order_differs_only_for_fgvc():
    "Where torchvision ImageFolder's sorted folder order (the released code's labels) disagrees with the class list."
    wrong = {}
    for n, folder in FOLDER.items():
        cl = D.get_spec(n).classes
        folders = list(cl) if n == "caltech101" else [folder(i, c) for i, c in enumerate(cl)]  # prepared layout
        shown = lambda f: D.EUROSAT_FOLDERS.get(f, f.split("_", 1)[1] if n == "cars" else f)
        bad = [f for f, c in zip(sorted(folders), cl) if D.name_key(shown(f)) != D.name_key(c)]
        if bad: wrong[n] = bad
    assert wrong == {"fgvc": ["BAE-125", "BAE-146-200", "BAE-146-300"]}


@pytest.mark.skipif(not (REF / "classes.json").exists(), reason="reference release files absent")
@pytest.mark.parametrize("name", D.BENCHMARKS)
def test_class_names_match_release(name):
    ref = json.loads((REF / "classes.json").read_text())
    assert D.get_spec(name).classes == ref[name]


@pytest.mark.skipif(not (REF / "templates.json").exists(), reason="reference release files absent")
@pytest.mark.parametrize("name", D.BENCHMARKS)
def test_templates_match_release(name):
    ref = json.loads((REF / "templates.json").read_text())
    assert D.get_spec(name).templates == ref[name]


def _native(name, dl, classes):
    "A tiny copy of the archive layout torchvision extracts for `name` (under <root>/_download)."
    if name == "dtd":
        base = dl / "dtd" / "dtd"
        for lst, k in (("train1", 0), ("val1", 1), ("test1", 2)):
            rels = [f"{c}/{c}_{k:04d}.jpg" for c in classes]
            for r in rels: put(base / "images" / r)
            (base / "labels").mkdir(parents=True, exist_ok=True); (base / "labels" / f"{lst}.txt").write_text("\n".join(rels) + "\n")
        return {"train": 2 * len(classes), "test": len(classes)}
    if name == "fgvc":
        base = dl / "fgvc-aircraft-2013b" / "data"
        for s, off in (("train", 0), ("test", 5000)):
            lines = [f"{off + i:07d} {c}" for i, c in enumerate(classes)]
            for l in lines: put(base / "images" / f"{l.split()[0]}.jpg")
            (base / f"images_variant_{s}.txt").write_text("\n".join(lines) + "\n")
        return {"train": len(classes), "test": len(classes)}
    if name == "food101":
        base = dl / "food-101"
        for s, k in (("train", 0), ("test", 1)):
            rels = [f"{c}/{1000 + k}" for c in classes]
            for r in rels: put(base / "images" / f"{r}.jpg")
            (base / "meta").mkdir(parents=True, exist_ok=True); (base / "meta" / f"{s}.txt").write_text("\n".join(rels) + "\n")
        return {"train": len(classes), "test": len(classes)}
    if name == "pets":
        base = dl / "oxford-iiit-pet"
        for lst, k in (("trainval", 1), ("test", 2)):
            imgs = [f"{c.replace(' ', '_')}_{k}" for c in classes]
            for i in imgs: put(base / "images" / f"{i}.jpg")
            (base / "annotations").mkdir(parents=True, exist_ok=True)
            (base / "annotations" / f"{lst}.txt").write_text("".join(f"{i} 1 1 1\n" for i in imgs))
        return {"train": len(classes), "test": len(classes)}
    if name == "caltech101":
        base = dl / "caltech101" / "101_ObjectCategories"
        back = {v: k for k, v in D.CALTECH_FOLDERS.items()}
        n = [31 + i % 7 for i in range(len(classes))]          # uneven, so every class gets its own draw
        for c, k in zip(classes + ["BACKGROUND_Google", "Faces_easy"], n + [33, 33]):
            for j in range(k): touch(base / back.get(c, c) / f"image_{j + 1:04d}.jpg")
        return {"train": 30 * len(classes), "test": sum(n) - 30 * len(classes)}
    if name == "eurosat":
        base = dl / "eurosat" / "2750"
        for f in D.EUROSAT_FOLDERS | {c: c for c in ("Forest", "River")}:
            for j in range(1, 1004): touch(base / f / f"{f}_{j}.jpg")   # first 1,000 names (as strings) train, 3 val
        return {"train": 10 * 1000, "test": 10 * 3}
    if name == "sun397":
        base = dl / "SUN397"
        (base).mkdir(parents=True, exist_ok=True)
        (base / "ClassName.txt").write_text("".join(f"/c/class_{i:03d}\n" for i in range(len(classes))))
        for i in range(len(classes)):
            for j in range(3 + i % 2): touch(base / "c" / f"class_{i:03d}" / f"sun_{j:04d}.jpg")
        return {"train": sum(round(0.7 * (3 + i % 2)) for i in range(len(classes))),
                "test": sum(3 + i % 2 - round(0.7 * (3 + i % 2)) - round(0.1 * (3 + i % 2)) for i in range(len(classes)))}


@pytest.mark.parametrize("name", ["dtd", "eurosat", "fgvc", "food101", "pets", "caltech101", "sun397"])
def test_download_arranges_layout(tmp_path, monkeypatch, name):
    "The torchvision download path, with torchvision's download replaced by a tiny native archive layout."
    calls = []
    monkeypatch.setattr(D, "_tv", lambda cls, root, **kw: calls.append((cls, kw)))
    want = _native(name, tmp_path / "_download", D.get_spec(name).classes)
    rep = D.download_dataset(name, tmp_path)
    assert len(calls) == 1 and rep.ok and rep.sizes == want, str(rep)
    assert not (tmp_path / "_download" / "layout").exists() and (tmp_path / D.DONE_FILE).exists()
    D.download_dataset(name, tmp_path)                    # a rerun has nothing to do
    assert len(calls) == 1
    if name in ("caltech101", "sun397"):                  # the seeded draw is the same on every machine
        tr = D.load_split(name, "train", tmp_path)
        again = tmp_path / "again"
        shutil.copytree(tmp_path / "_download", again / "_download")
        D.download_dataset(name, again)
        assert [p.name for p, _ in D.load_split(name, "train", again).samples] == [p.name for p, _ in tr.samples]


def legacy_caltech_train(base: Path, per_class=30):
    "The released create_caltech101_data_files.py draw, written out here over sorted folders: folder -> train files."
    np.random.seed(0)
    out = {}
    for label in sorted(os.listdir(base)):
        if label in ("BACKGROUND_Google", "Faces_easy"): continue
        names = sorted(os.listdir(base / label))
        idx = set(np.random.choice(len(names), size=per_class, replace=False))
        out[label] = sorted(n for k, n in enumerate(names) if k in idx)
    return out


def test_caltech_download_is_the_released_draw(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_tv", lambda *a, **k: None)
    classes = D.get_spec("caltech101").classes
    _native("caltech101", tmp_path / "_download", classes)
    D.download_dataset("caltech101", tmp_path)
    base = tmp_path / "_download" / "caltech101" / "101_ObjectCategories"
    want = legacy_caltech_train(base)
    got = {f: sorted(p.name for p in (tmp_path / "train" / D.CALTECH_FOLDERS.get(f, f)).iterdir()) for f in want}
    assert got == want
    # the draw microclip made before (default_rng over sorted folders) is another split
    rng = np.random.default_rng(0)
    old = {f: sorted(n for k, n in enumerate(sorted(os.listdir(base / f)))
                     if k in set(rng.choice(len(os.listdir(base / f)), size=30, replace=False).tolist())) for f in want}
    assert old != want


def test_download_resumes_an_interrupted_fetch(tmp_path, monkeypatch):
    "A fetch cut short (`.fetching` left behind): the extracted tree is removed and unpacked again."
    dl = tmp_path / "_download"
    junk = touch(dl / "oxford-iiit-pet" / "images" / "half_written.jpg")
    (dl / ".fetching").touch()
    def fetch(cls, root, **kw):
        assert not junk.exists()
        _native("pets", Path(root), D.get_spec("pets").classes)
    monkeypatch.setattr(D, "_tv", fetch)
    rep = D.download_dataset("pets", tmp_path)
    assert rep.ok and (dl / ".fetched").exists() and not (dl / ".fetching").exists()


def test_download_failure_is_one_message(tmp_path, monkeypatch):
    def offline(cls, root, **kw): raise OSError("Network is unreachable")
    monkeypatch.setattr(D, "_tv", offline)
    with pytest.raises(MicroclipError, match="torchvision's download .* failed .*Network is unreachable.*rerun to resume"):
        D.download_dataset("dtd", tmp_path)
    assert (tmp_path / "_download" / ".fetching").exists() and not (tmp_path / "_download" / ".fetched").exists()


def test_download_never_half_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_tv", lambda *a, **k: None)
    classes = D.get_spec("fgvc").classes
    _native("fgvc", tmp_path / "_download", classes)
    img = next((tmp_path / "_download" / "fgvc-aircraft-2013b" / "data" / "images").iterdir())
    img.rename(tmp_path / "held")
    with pytest.raises(MicroclipError, match=img.name):
        D.download_dataset("fgvc", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_download", "held"]     # no train/ or test/ yet
    (tmp_path / "held").rename(img)
    assert D.download_dataset("fgvc", tmp_path).ok
    # a folder the command did not place is never overwritten
    other = tmp_path / "other"; put(other / "train" / "x" / "a.png")
    shutil.copytree(tmp_path / "_download" / "fgvc-aircraft-2013b", other / "_download" / "fgvc-aircraft-2013b")
    with pytest.raises(MicroclipError, match="already exists"):
        D.download_dataset("fgvc", other)


def test_flowers_download_asks_for_coop_split(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "_tv", lambda *a, **k: None)
    jpg = tmp_path / "_download" / "flowers-102" / "jpg"
    for k in range(1, 5): put(jpg / f"image_{k:05d}.jpg")
    with pytest.raises(MicroclipError, match="split_zhou_OxfordFlowers.json") as e:
        D.download_dataset("flowers", tmp_path)
    assert str(tmp_path / "split_zhou_OxfordFlowers.json") in str(e.value) and "NOT READY" in str(e.value)
    assert sorted(p.name for p in (tmp_path / "jpg").iterdir()) == [f"image_{k:05d}.jpg" for k in range(1, 5)]
    cl = D.get_spec("flowers").classes
    (tmp_path / "split_zhou_OxfordFlowers.json").write_text(json.dumps(
        {"train": [["image_00001.jpg", 0, cl[0]], ["image_00002.jpg", 1, cl[1]]], "val": [],
         "test": [["image_00003.jpg", 0, cl[0]]]}))
    rep = D.download_dataset("flowers", tmp_path)
    assert rep.ok and rep.sizes == {"train": 2, "test": 1}


@pytest.mark.parametrize("name", ["birdsnap", "cars", "cub", "resisc45", "ucf101"])
def test_manual_datasets_say_what_to_put_where(tmp_path, name):
    with pytest.raises(MicroclipError, match="cannot be downloaded by microclip") as e:
        D.download_dataset(name, tmp_path)
    assert str(tmp_path) in str(e.value)
    assert not any(tmp_path.iterdir())                   # nothing written


def test_cli_data_download(tmp_path, monkeypatch, capsys):
    from microclip.cli import main
    assert main(["data", "download", "ucf101", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: UCF101") and "testlist01" in err and str(tmp_path / "val") in err
    monkeypatch.setattr(D, "_tv", lambda *a, **k: None)
    _native("pets", tmp_path / "pets" / "_download", D.get_spec("pets").classes)
    assert main(["data", "download", "pets", "--root", str(tmp_path / "pets")]) == 0
    out = capsys.readouterr()
    assert "OK" in out.out and "placed 74 / 74 files" in out.err
    assert main(["data", "download", "flowers", "--root", str(tmp_path / "fl")]) == 2   # fetch stubbed: nothing there
    assert "incomplete" in capsys.readouterr().err
