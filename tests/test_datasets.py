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
        for c in classes + ["BACKGROUND_Google", "Faces_easy"]:
            for j in range(32): put(base / back.get(c, c) / f"image_{j + 1:04d}.jpg")
        return {"train": 30 * len(classes), "test": 2 * len(classes)}


@pytest.mark.parametrize("name", ["dtd", "fgvc", "food101", "pets", "caltech101"])
def test_download_arranges_layout(tmp_path, monkeypatch, name):
    "The torchvision download path, with torchvision's download replaced by a tiny native archive layout."
    calls = []
    monkeypatch.setattr(D, "_tv", lambda cls, root, **kw: calls.append((cls, kw)))
    want = _native(name, tmp_path / "_download", D.get_spec(name).classes)
    rep = D.download_dataset(name, tmp_path)
    assert calls and rep.ok and rep.sizes == want, str(rep)
    if name == "caltech101":   # the seeded draw is the same on every machine
        tr = D.load_split(name, "train", tmp_path)
        again = tmp_path / "again"; monkeypatch.setattr(D, "_tv", lambda *a, **k: None)
        shutil.copytree(tmp_path / "_download", again / "_download")
        D.download_dataset(name, again)
        assert [p.name for p, _ in D.load_split(name, "train", again).samples] == [p.name for p, _ in tr.samples]
