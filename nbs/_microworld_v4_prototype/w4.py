"""Scratch microworld v4 prototype: species that differ in 2-3 field marks of shape, pattern and colour,
alt-text-noisy captions, and per-patch concept labels for region-level alignment in pretraining.
Reuses microclip.microworld for the canvas/nuisance machinery. Deterministic from seeds."""
from __future__ import annotations
import dataclasses, json, os, itertools
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import numpy as np
from PIL import Image, ImageDraw
from microclip import microworld as mw
from microclip.core import write_json, write_text

C5 = ("red", "yellow", "blue", "black", "white")
ATTRS = {  # slot attributes
    "crest shape": ("spiky", "round", "fan-shaped"),
    "crest colour": C5,
    "wing pattern": ("bar", "spots", "stripes"),
    "wing colour": ("white", "yellow", "red", "blue", "orange"),
    "tail shape": ("square", "forked", "long"),
    "tail colour": ("white", "black", "yellow", "red", "blue"),
    "eye ring colour": ("white", "yellow", "red", "blue", "green"),
    "breast colour": ("white", "yellow", "orange", "red", "black"),
}
SLOTS = {"crest": ("crest shape", "crest colour"), "wing": ("wing pattern", "wing colour"),
         "tail": ("tail shape", "tail colour"), "eye": ("eye ring colour",), "breast": ("breast colour",)}
LABELS = {"background": 0, "body": 1, "crest": 2, "beak": 3, "eye ring": 4, "wing mark": 5, "tail tip": 6, "breast": 7}
NAMES = mw.SPECIES_NAMES


def make_species(seed: int = 4, n_genera: int = 6, per_genus: int = 4, d_min: int = 2) -> dict:
    """6 genera (random base birds far apart), 4 species each: the base with 2-3 marks changed; every pair of species
    differs in >= d_min attributes. Deterministic."""
    rng = np.random.default_rng(seed)
    keys = list(ATTRS)
    dist = lambda a, b: sum(a[k] != b[k] for k in keys)
    rand = lambda: {k: ATTRS[k][rng.integers(len(ATTRS[k]))] for k in keys}
    bases = []
    while len(bases) < n_genera:
        b = rand()
        if all(dist(b, o) >= 5 for o in bases): bases.append(b)
    table = []
    for b in bases:
        got = []
        while len(got) < per_genus:
            s = dict(b)
            for k in rng.choice(keys, size=rng.integers(2, 4), replace=False):
                s[k] = str(rng.choice([v for v in ATTRS[k] if v != b[k]]))
            if all(dist(s, o) >= d_min for o in table + got): got.append(s)
        table += got
    return dict(zip(NAMES, table, strict=True))

def make_species_shape(seed: int = 5, n_genera: int = 6, per_genus: int = 4) -> dict:
    """Variant 'shape': every species has its own shape signature (crest shape, wing pattern, tail shape: 24 of the 27),
    so any two species differ in >= 1 shape/pattern mark; genera share colours, each species changes 1-2 colour marks;
    every pair differs in >= 2 attributes."""
    rng = np.random.default_rng(seed)
    shape_keys = ("crest shape", "wing pattern", "tail shape")
    colour_keys = [k for k in ATTRS if k not in shape_keys]
    sigs = list(itertools.product(*(ATTRS[k] for k in shape_keys)))
    sigs = [sigs[i] for i in rng.permutation(len(sigs))]
    keys = list(ATTRS)
    dist = lambda a, b: sum(a[k] != b[k] for k in keys)
    table, si = [], 0
    for g in range(n_genera):
        base = {k: str(ATTRS[k][rng.integers(len(ATTRS[k]))]) for k in colour_keys}
        got = 0
        while got < per_genus:
            s = dict(base)
            for k in rng.choice(colour_keys, size=rng.integers(1, 3), replace=False):
                s[k] = str(rng.choice([v for v in ATTRS[k] if v != base[k]]))
            s.update(dict(zip(shape_keys, sigs[si % len(sigs)])))
            if all(dist(s, o) >= 2 for o in table): table.append({k: s[k] for k in keys}); si += 1; got += 1
            else: si += 1
    return dict(zip(NAMES, table, strict=True))

SPECIES = make_species_shape() if os.environ.get("W4_SPECIES") == "shape" else make_species()

# ---------------------------------------------------------------- drawing
E = mw._ellipse

def _crest(shape):
    return mw._crest({"fan-shaped": "fan"}.get(shape, shape))

def _tail(shape):
    if shape == "square": return np.array([[-19, -7], [-29, -10], [-29, 10], [-19, 6]], float)
    if shape == "forked": return np.array([[-19, -7], [-32, -13], [-26, 0], [-32, 13], [-19, 6]], float)
    return np.array([[-19, -5], [-37, -6], [-37, 6], [-19, 4]], float)      # long

def _wing_marks(pattern):
    if pattern == "bar": return [np.array([[-4, -6], [1, -6], [1, 4], [-4, 4]], float)]
    if pattern == "spots": return [E(-8, -1, 2.4, 2.4, 12), E(-2, 1.5, 2.4, 2.4, 12), E(4, -2, 2.4, 2.4, 12)]
    return [np.array([[x, -6], [x + 2.2, -6], [x + 4.2, 4], [x + 2, 4]], float) for x in (-11, -5, 1)]  # stripes

def body_plan(attrs: dict, body: tuple) -> list[tuple]:
    c = lambda k: mw.COLOURS[attrs[k]]
    dark = tuple(int(v * 0.75) for v in body)
    L = LABELS
    out = [(np.array([[-1, 9], [1, 9], [1, 16], [-1, 16]], float), (60, 50, 40), 1),
           (np.array([[4, 8], [6, 8], [6, 16], [4, 16]], float), (60, 50, 40), 1),
           (np.array([[-11, -3], [-19, -7], [-19, 6], [-11, 4]], float), dark, 1),
           (_tail(attrs["tail shape"]), c("tail colour"), L["tail tip"]),
           (_crest(attrs["crest shape"]), c("crest colour"), L["crest"]),
           (E(0, 0, 14, 9.5), body, 1),
           (E(6, 3.5, 9, 5.5), c("breast colour"), L["breast"]),
           (E(13, -8, 8, 8), body, 1),
           (np.array([[19, -11], [20, -3], [31, -7]], float), (50, 40, 30), L["beak"]),
           (E(-2, -1, 10, 5.5), dark, 1)]
    out += [(p, c("wing colour"), L["wing mark"]) for p in _wing_marks(attrs["wing pattern"])]
    out += [(E(15, -9, 4.5, 4.5), c("eye ring colour"), L["eye ring"]), (E(15, -9, 1.8, 1.8, 10), (10, 10, 10), L["eye ring"])]
    return out

BG_KINDS = ("plain", "striped", "blotchy", "speckled")

def _background(rng, size, nz):
    "mw._background, also returning the texture kind (same random draws)."
    grid = mw._NATURE[rng.integers(0, len(mw._NATURE), (3, 3))] + rng.normal(0, 15, (3, 3, 3))
    img = np.asarray(Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC), float)
    kind = 0
    if rng.random() < nz.p_texture:
        k, a = rng.integers(0, 3), nz.texture_strength * rng.uniform(20, 55)
        kind = int(k) + 1
        yy, xx = np.mgrid[0:size, 0:size] / size
        if k == 0:
            th, f = rng.uniform(0, np.pi), rng.uniform(3, 9)
            tex = np.sin(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + rng.uniform(0, 6.3))
        elif k == 1:
            small = rng.normal(0, 1, (size // 8, size // 8))
            tex = np.asarray(Image.fromarray(((small + 3) * 40).clip(0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC), float) / 40 - 3
        else:
            tex = rng.normal(0, 0.8, (size, size))
        img = img + a * tex[..., None] * rng.uniform(0.5, 1.0, 3)
    return img, kind

def render(attrs, rng, size=64, nz=mw.BENCHMARK):
    "As mw.render with the v4 body plan; info also carries the background kind."
    S, k = 2 * size, 2 * size / 64
    bg, bgk = _background(rng, S, nz)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    labels = Image.new("L", (S, S), 0)
    draw, ldraw = ImageDraw.Draw(canvas), ImageDraw.Draw(labels)
    for _ in range(rng.integers(*nz.distractors)):
        r = rng.uniform(*nz.distractor_size) * k
        draw.polygon([tuple(p) for p in mw._shape(rng, *rng.uniform(0, S, 2), r)], fill=mw.COLOURS[rng.choice(list(mw.COLOURS))])
    s, th = rng.uniform(*nz.scale) * k, np.deg2rad(rng.uniform(-nz.max_rotation, nz.max_rotation))
    flip = rng.random() < 0.5
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) * s
    if flip: R = R @ np.diag([-1.0, 1.0])
    half = 30 * s * (1 - nz.off_canvas)
    t = rng.uniform(half, S - half, 2) if S > 2 * half else np.full(2, S / 2)
    body = list(mw.BODY_COLOURS)[rng.integers(len(mw.BODY_COLOURS))]
    for poly, rgb, lab in body_plan(attrs, mw.BODY_COLOURS[body]):
        pts = [tuple(p) for p in (poly - [0, 4]) @ R.T + t]
        draw.polygon(pts, fill=tuple(rgb)); ldraw.polygon(pts, fill=lab)
    full = np.bincount(np.asarray(labels).ravel(), minlength=8)
    occluded = rng.random() < nz.p_occlusion
    if occluded:
        for _ in range(rng.integers(1, 3)):
            pts = [tuple(p) for p in mw._leaf(rng, *(t + rng.normal(0, 10 * s, 2)), rng.uniform(*nz.occluder_size) * k)]
            g = (int(rng.integers(30, 80)), int(rng.integers(100, 160)), int(rng.integers(30, 70)))
            draw.polygon(pts, fill=g); ldraw.polygon(pts, fill=0)
    img = np.asarray(canvas.reduce(2), float)
    if tuple(nz.contrast) != (1.0, 1.0):
        img = img.mean((0, 1)) + rng.uniform(*nz.contrast) * (img - img.mean((0, 1)))
    img = img * rng.uniform(*nz.brightness) * (1 + rng.uniform(-nz.colour_cast, nz.colour_cast, 3))
    img = img + rng.normal(0, nz.noise, img.shape)
    visible = np.bincount(np.asarray(labels).ravel(), minlength=8)
    info = dict(body=body, bg=bgk, scale=round(s / k, 3), rotation=round(float(np.rad2deg(th)), 1), flip=bool(flip),
                occluded=bool(occluded), parts_visible=round(float(visible[2:].sum() / max(1, full[2:].sum())), 3))
    return np.clip(img, 0, 255).round().astype(np.uint8), np.asarray(labels.resize((size, size), Image.NEAREST)), info

# ---------------------------------------------------------------- text
def _an(p): return mw._an(p)

def slot_phrase(slot, attrs, rng, mention="both"):
    "A phrase for one slot; mention in shape|colour|both (for 1-attribute slots: colour)."
    if slot == "crest":
        sh, c = attrs["crest shape"], attrs["crest colour"]
        return _an({"shape": f"a {sh} crest", "colour": f"a {c} crest", "both": f"a {sh} {c} crest"}[mention])
    if slot == "wing":
        p, c = attrs["wing pattern"], attrs["wing colour"]
        if mention == "shape": return ["a barred wing", "a spotted wing", "a striped wing"][ATTRS["wing pattern"].index(p)]
        word = {"bar": "bars", "spots": "spots", "stripes": "stripes"}[p]
        if mention == "colour": return f"{c} marks on the wing"
        forms = {"bar": [f"a {c} wing bar", f"{c} bars on the wing"], "spots": [f"{c} spots on the wing", f"a {c}-spotted wing"],
                 "stripes": [f"{c} stripes on the wing", f"a {c}-striped wing"]}[p]
        return _an(forms[rng.integers(2)])
    if slot == "tail":
        sh, c = attrs["tail shape"], attrs["tail colour"]
        if mention == "shape": return f"a {sh} tail"
        if mention == "colour": return [f"a {c} tail tip", f"a {c}-tipped tail"][rng.integers(2)]
        return f"a {sh} {c}-tipped tail"
    if slot == "eye": return _an([f"a {attrs['eye ring colour']} eye ring", f"a {attrs['eye ring colour']} ring around the eye"][rng.integers(2)])
    if slot == "breast": return [f"a {attrs['breast colour']} breast", f"a {attrs['breast colour']} chest"][rng.integers(2)]
    raise KeyError(slot)

def _noisy(attrs, rng, p_wrong):
    "Alt-text noise: every attribute value is independently replaced by a wrong one with probability p_wrong."
    a = dict(attrs)
    for k in ATTRS:
        if rng.random() < p_wrong: a[k] = ATTRS[k][rng.integers(len(ATTRS[k]))]
    return a

ATTR_FORMS = mw._ATTR_FORMS

def caption(attrs, rng, name=None, body=None, p_wrong=0.0, p_name=0.3, p_name_only=0.3):
    if name is not None and rng.random() < p_name_only:
        return mw._NAME_FORMS[rng.integers(len(mw._NAME_FORMS))].format(name)
    a = _noisy(attrs, rng, p_wrong)
    slots = list(rng.choice(list(SLOTS), size=rng.integers(1, 5), replace=False))
    ps = []
    for s in slots:
        m = "colour" if len(SLOTS[s]) == 1 else ("shape", "colour", "both")[rng.integers(3)]
        ps.append(slot_phrase(s, a, rng, m))
    if name is not None and rng.random() < p_name: return f"a {name} with {mw.join_phrases(ps)}."
    form = ATTR_FORMS[rng.integers(len(ATTR_FORMS))]
    return form.replace("{body}", body or "small").format(mw.join_phrases(ps))

# ---------------------------------------------------------------- concepts for dense alignment
def concept_texts():
    "Fixed concept vocabulary: (list of texts, dict key->index). Keys: ('crest', shape, colour) etc."
    rng = np.random.default_rng(0)
    texts, idx = [], {}
    def add(key, t): idx[key] = len(texts); texts.append(t)
    for sh in ATTRS["crest shape"]:
        for c in ATTRS["crest colour"]: add(("crest", sh, c), f"a {sh} {c} crest.")
    for p in ATTRS["wing pattern"]:
        for c in ATTRS["wing colour"]: add(("wing", p, c), f"{c} {dict(bar='bars', spots='spots', stripes='stripes')[p]} on the wing.")
    for sh in ATTRS["tail shape"]:
        for c in ATTRS["tail colour"]: add(("tail", sh, c), f"a {sh} {c}-tipped tail.")
    for c in ATTRS["eye ring colour"]: add(("eye", c), f"a {c} eye ring.")
    for c in ATTRS["breast colour"]: add(("breast", c), f"a {c} breast.")
    for b in mw.BODY_COLOURS: add(("body", b), f"the {b} body of a bird.")
    for i, k in enumerate(BG_KINDS): add(("bg", i), f"a {k} background.")
    return texts, idx

CONCEPTS, CONCEPT_IDX = concept_texts()
_PART_KEY = {2: lambda a: ("crest", a["crest shape"], a["crest colour"]), 5: lambda a: ("wing", a["wing pattern"], a["wing colour"]),
             6: lambda a: ("tail", a["tail shape"], a["tail colour"]), 4: lambda a: ("eye", a["eye ring colour"]),
             7: lambda a: ("breast", a["breast colour"])}

def patch_concepts(lab, attrs, info, patch=8, part_min=0.2, obj_min=0.4, bg_max=0.1):
    "(N,) concept index per patch (-1 = ignore) from a label map (H,W)."
    H = lab.shape[0]; g = H // patch
    L = lab.reshape(g, patch, g, patch).transpose(0, 2, 1, 3).reshape(g * g, patch * patch)
    out = np.full(g * g, -1, np.int64)
    for i, row in enumerate(L):
        cnt = np.bincount(row, minlength=8) / row.size
        parts = {j: cnt[j] for j in _PART_KEY}
        j = max(parts, key=parts.get)
        obj = 1 - cnt[0]
        if parts[j] >= part_min: out[i] = CONCEPT_IDX[_PART_KEY[j](attrs)]
        elif obj >= obj_min: out[i] = CONCEPT_IDX[("body", info["body"])]
        elif obj <= bg_max: out[i] = CONCEPT_IDX[("bg", info["bg"])]
    return out

# ---------------------------------------------------------------- stream
@dataclasses.dataclass(frozen=True)
class StreamCfg:
    p_species: float = 0.5
    p_wrong: float = 0.0        # alt-text attribute noise
    p_name: float = 0.3         # species images: probability the name appears
    p_name_only: float = 0.3
    dense_noise: bool = False   # region labels get the same kind of attribute noise (independent draw)
    photometric: float = 0.0    # probability of a web-photo photometric variation (greyscale 20 %, else saturation,
                                # exposure and contrast drawn wide); no hue change, so colour words stay true

def photometric(img, rng):
    x = img.astype(float); grey = (x @ [0.299, 0.587, 0.114])[..., None]
    if rng.random() < 0.2: x = np.repeat(grey, 3, -1)
    else:
        x = grey + rng.uniform(0.3, 1.6) * (x - grey)
        x = x * rng.uniform(0.6, 1.4)
        x = x.mean((0, 1)) + rng.uniform(0.6, 1.4) * (x - x.mean((0, 1)))
    return np.clip(x, 0, 255).round().astype(np.uint8)

def corpus_item(rng, size=64, nz=mw.PRETRAIN, sc: StreamCfg = StreamCfg()):
    if rng.random() < sc.p_species:
        name = NAMES[rng.integers(len(NAMES))]; attrs = SPECIES[name]
    else:
        name, attrs = None, {a: vs[rng.integers(len(vs))] for a, vs in ATTRS.items()}
        if attrs in SPECIES.values(): name = NAMES[list(SPECIES.values()).index(attrs)]
    img, lab, info = render(attrs, rng, size, nz)
    if sc.photometric and rng.random() < sc.photometric: img = photometric(img, rng)
    cap = caption(attrs, rng, name=name, body=info["body"], p_wrong=sc.p_wrong, p_name=sc.p_name, p_name_only=sc.p_name_only)
    if sc.dense_noise: attrs = _noisy(attrs, rng, sc.p_wrong)
    return img, cap, patch_concepts(lab, attrs, info)

def corpus_batch(seed, step, batch_size=64, size=64, nz=mw.PRETRAIN, sc: StreamCfg = StreamCfg()):
    rng = np.random.default_rng([seed, step, 7])
    items = [corpus_item(rng, size, nz, sc) for _ in range(batch_size)]
    return np.stack([i[0] for i in items]), [i[1] for i in items], np.stack([i[2] for i in items])

# ---------------------------------------------------------------- benchmark
GENERIC = mw._GENERIC
DESC_FORMS = mw._DESC_FORMS

def describe(name, rng, n=20, p_wrong=0.15, p_generic=0.2):
    attrs, out = SPECIES[name], []
    for _ in range(n):
        if rng.random() < p_generic: out.append(GENERIC[rng.integers(len(GENERIC))].format(name=name)); continue
        a = dict(attrs)
        slots = list(rng.choice(list(SLOTS), size=rng.integers(1, 4), replace=False))
        if rng.random() < p_wrong:
            k = SLOTS[slots[0]][rng.integers(len(SLOTS[slots[0]]))]
            a[k] = str(rng.choice([v for v in ATTRS[k] if v != attrs[k]]))
        ps = [slot_phrase(s, a, rng, "colour" if len(SLOTS[s]) == 1 else ("shape", "colour", "both", "both")[rng.integers(4)]) for s in slots]
        p = mw.join_phrases(ps)
        out.append(DESC_FORMS[rng.integers(len(DESC_FORMS))].format(name=name, p=p, P=p[0].upper() + p[1:]))
    return out

def make_descriptions(seed=0, n=20):
    return {name: describe(name, np.random.default_rng([seed, i, 11]), n) for i, name in enumerate(NAMES)}

SPLITS = ("train", "test")

def _draw_class(args):
    root, seed, si, ci, n, size, nz = args
    split, name = SPLITS[si], NAMES[ci]
    rows = []
    for i in range(n):
        img, lab, info = render(SPECIES[name], np.random.default_rng([seed, si, ci, i, 4]), size, nz)
        rel = f"{split}/{name}/{i:05d}.png"
        Image.fromarray(img).save(Path(root) / rel); Image.fromarray(lab).save(Path(root) / "masks" / rel)
        rows.append(dict(split=split, label=ci, file=rel, **info))
    return rows

def generate(root, seed=0, n_train=150, n_test=50, size=64, nz=mw.BENCHMARK, workers=2):
    root = Path(root)
    if (root / "meta.json").exists(): return root
    for s in SPLITS:
        for c in NAMES: (root / s / c).mkdir(parents=True, exist_ok=True); (root / "masks" / s / c).mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), seed, si, ci, (n_train, n_test)[si], size, nz) for si in range(2) for ci in range(len(NAMES))]
    with ProcessPoolExecutor(workers) as ex: rows = list(ex.map(_draw_class, jobs))
    write_text(root / "classes.txt", "\n".join(NAMES) + "\n")
    write_json(root / "parts.json", LABELS)
    write_json(root / "descriptions.json", make_descriptions(seed))
    write_text(root / "images.jsonl", "".join(json.dumps(r) + "\n" for rs in rows for r in rs))
    write_json(root / "meta.json", dict(version="v4-scratch", species=SPECIES, n_images=sum(map(len, rows))))
    return root
