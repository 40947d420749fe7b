"""Scratch evaluation of a tiny-CLIP checkpoint against issue #16's targets, with the project's own functions.
Usage: python ev4.py WEIGHTS WORLD_ROOT OUT.json [MODEL_NAME]"""
from __future__ import annotations
import json, math, sys, time
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
import open_clip
HERE = Path(__file__).parent
from microclip import tinyclip as _tc; _tc.register_configs()
open_clip.add_model_config(HERE / "model_configs")
from microclip.backbone import Backbone, value_value
from microclip.core import load_config
from microclip.model import build_heads, build_model
from microclip.datasets import load_split
from microclip.views import eval_transform
from microclip.soap import ncut_foreground, masked_mean, mask_to_image
from microclip.saliency import iou, mask_path
from microclip import tinyclip, demo
from microclip import microworld as mw


@torch.no_grad()
def dense(bb: Backbone, x):
    "g, raw value-value tokens P (after ln_post, as SOAP sees them) and last-block keys (B,N,D)."
    v = bb.clip.visual
    h = bb._embed(x)
    blocks = v.transformer.resblocks
    for blk in blocks[:-1]: h = blk(h)
    out = blocks[-1](h)
    g = F.normalize(v.ln_post(out[:, 0]) @ v.proj, dim=-1)
    P = v.ln_post(value_value(blocks[-1], h))[:, 1:]
    a = blocks[-1].attn; D = a.embed_dim
    K = F.linear(blocks[-1].ln_1(h), a.in_proj_weight[D:2 * D], a.in_proj_bias[D:2 * D])[:, 1:]
    return g, P, K


def evaluate(weights, root, out=None, model_name="microclip-tiny", n_views=1200, probe_epochs=200):
    t0 = time.time()
    root = Path(root)
    classes = (root / "classes.txt").read_text().strip().split("\n")
    bb = Backbone.from_name(model_name, pretrained=str(weights)).eval()
    heads = build_heads(bb, classes, json.loads((root / "descriptions.json").read_text()), list(mw.TEMPLATES))
    cfg = load_config("microworld", {"backbone": model_name})
    model = build_model(bb, heads, cfg).eval()
    W = heads["description mean"]
    ev = eval_transform(bb.image_size, bb.mean, bb.std)
    r = {"weights": str(weights), "world": str(root)}
    feats = {}
    for split in ("train", "test"):
        ds = load_split("microworld", split, root=root)
        xs = [ev(Image.open(p).convert("RGB")) for p, _ in ds.samples]
        y = torch.tensor([c for _, c in ds.samples])
        G, Ps, Ks, FG, M = [], [], [], [], []
        for i in range(0, len(xs), 200):
            x = torch.stack(xs[i:i + 200])
            g, P, K = dense(bb, x)
            G.append(g)
            if split == "test":
                Ps.append(P); Ks.append(K)
                with torch.no_grad(): FG.append(model.encode(x).f)
        feats[split] = (torch.cat(G), y)
        if split == "test":
            P, K, FGt = torch.cat(Ps), torch.cat(Ks), torch.cat(FG)
            paths = [p for p, _ in ds.samples]
    (gtr, ytr), (gte, yte) = feats["train"], feats["test"]
    acc = lambda s, y: round(float((s.argmax(1) == y).float().mean()) * 100, 2)
    r["linear_probe"] = round(tinyclip.linear_probe(gtr, ytr.numpy(), gte, yte.numpy(), epochs=probe_epochs), 2)
    for k, h in heads.items():
        pred = (gte @ h.T).argmax(1)
        pc = [float((pred[yte == c] == c).float().mean() * 100) for c in range(len(classes))]
        r[f"zs {k}"] = acc(gte @ h.T, yte); r[f"zs {k} min class"] = round(min(pc), 1)
        r[f"zs {k} n classes < 20"] = int(sum(a < 20 for a in pc))
    best = max(heads, key=lambda k: r[f"zs {k}"])
    r["best zs head"] = best; r["gap probe - best zs"] = round(r["linear_probe"] - r[f"zs {best}"], 2)
    r["[CLS] zs (desc mean)"] = r["zs description mean"]
    r["[FG] zs (desc mean, released NCut)"] = acc(FGt @ W.T, yte)
    r["mean vv token zs (desc mean)"] = acc(F.normalize(bb.project(P.mean(1)), dim=-1) @ W.T, yte)
    # saliency vs ground truth, per NCut input and rule
    labs = np.stack([np.array(Image.open(mask_path(p, root))) for p in paths])
    obj = torch.from_numpy(labs >= 1)
    inputs = {"raw values": P, "L2 values": F.normalize(P, dim=-1), "L2 keys": F.normalize(K, dim=-1)}
    D = P.shape[-1]
    r["object fraction"] = round(float(obj.float().mean()), 3)
    for name, T_ in inputs.items():
        for rule, (thr, sign) in {"std,invert": ("std", "invert"), "mean,rethreshold": ("mean", "rethreshold")}.items():
            mask, _ = ncut_foreground(T_, tau=cfg.ncut_tau, threshold=thr, sign=sign)
            up = mask_to_image(mask, bb.grid, bb.image_size).numpy()
            ious = [iou(up[i], obj[i].numpy()) for i in range(len(up))]
            q = masked_mean(P, mask)
            logits = torch.einsum("bd,bnd->bn", q, torch.cat([P, P.new_zeros(len(P), 1, D)], 1)) / math.sqrt(D)
            pk = logits[:, :-1].argmax(1)
            pm = torch.zeros_like(mask); pm[torch.arange(len(pm)), pk] = True
            pup = mask_to_image(pm, bb.grid, bb.image_size)
            point = (pup & obj).flatten(1).any(1).float().mean().item()
            key = f"{name} [{rule}]"
            r[f"ncut IoU {key}"] = round(float(np.mean(ious)), 3)
            r[f"ncut mask area {key}"] = round(float(up.mean()), 3)
            r[f"soap peak on object {key}"] = round(point * 100, 1)
            if rule == "std,invert":   # [FG] with identity SOAP from this mask
                pooled = torch.einsum("bn,bnd->bd", logits.softmax(-1), torch.cat([P, P.new_zeros(len(P), 1, D)], 1))
                r[f"[FG] zs via {name} mask"] = acc(F.normalize(bb.project(pooled), dim=-1) @ W.T, yte)
    # oracle: [FG]-style pooling with the ground-truth object mask (what a perfect mask would give)
    gtm = torch.from_numpy(labs >= 1).float().view(len(labs), bb.grid[0], bb.image_size // bb.grid[0], bb.grid[1], -1).mean((2, 4)).flatten(1) > 0.3
    r["oracle masked-mean vv zs"] = acc(F.normalize(bb.project(masked_mean(P, gtm)), dim=-1) @ W.T, yte)
    v = demo.view_robustness(weights, root, n=n_views, progress=False) if model_name == "microclip-tiny" else _views(bb, root, W, n_views)
    r["views"] = v
    r["strong/weak ratio"] = round(v["strong (released)"] / max(v["weak"], 1e-9), 3)
    r["eval_s"] = round(time.time() - t0, 1)
    if out: Path(out).write_text(json.dumps(r, indent=1))
    return r


def _views(bb, root, W, n):
    "demo.view_robustness for a backbone built here (non-default model names)."
    import microclip.demo as d
    orig = d._tiny_clip_and_heads
    classes = (Path(root) / "classes.txt").read_text().strip().split("\n")
    d._tiny_clip_and_heads = lambda weights, root_: (bb, Path(root), classes, {"description mean": W})
    try: return d.view_robustness(None, root, n=n, progress=False)
    finally: d._tiny_clip_and_heads = orig


if __name__ == "__main__":
    torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
    r = evaluate(sys.argv[1], sys.argv[2], sys.argv[3], *(sys.argv[4:5] or []), n_views=int(__import__("os").environ.get("N_VIEWS", "1200")))
    print(json.dumps(r, indent=1))
