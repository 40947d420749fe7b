"""Scratch pretraining of the tiny CLIP on the v4 stream: CLIP loss on [CLS] + optional region-level (per-patch concept)
alignment of the last block's value-value tokens + optional (v3-style) CLIP loss on the mean value-value token.
Usage: python pre4.py RUN_DIR '{"steps": 400, ...}'   (resumable; writes log.tsv, microclip-tiny.pt)"""
from __future__ import annotations
import dataclasses, json, math, os, sys, time
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
import open_clip
HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from microclip import tinyclip as _tc; _tc.register_configs()
open_clip.add_model_config(HERE / "model_configs")
import w4
from microclip import tinyclip
from microclip import microworld as mw
from microclip.backbone import Backbone


@dataclass
class Cfg:
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    logit_lr: float = 1e-2
    weight_decay: float = 0.1
    warmup: int = 50
    seed: int = 0
    model: str = "microclip-tiny"
    image_size: int = 64
    dense_weight: float = 1.0     # per-patch concept alignment of value-value tokens (region-level, RegionCLIP/MaskCLIP-style)
    dense_scale: float = 20.0     # fixed inverse temperature of the dense loss
    vv_weight: float = 0.0        # v3's CLIP loss on the mean value-value token
    p_species: float = 0.5
    p_wrong: float = 0.0
    p_name: float = 0.3
    p_name_only: float = 0.3
    dense_noise: bool = False
    photometric: float = 0.0
    dense_on: str = "values"      # "values": last-block value-value tokens through CLIP's ln_post+proj (shared with [FG]);
                                  # "hidden": the tokens entering the last block, through a throwaway linear head (not exported)
    init_from: str | None = None
    stream_offset: int = 0


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, cfg: Cfg, start: int):
        super().__init__(); self.cfg, self.start = cfg, start
        self.tok = open_clip.get_tokenizer(cfg.model)
        self.sc = w4.StreamCfg(cfg.p_species, cfg.p_wrong, cfg.p_name, cfg.p_name_only, cfg.dense_noise, cfg.photometric)
    def __iter__(self):
        torch.set_num_threads(1)
        c = self.cfg
        for s in range(c.stream_offset + self.start, c.stream_offset + c.steps):
            imgs, caps, pcs = w4.corpus_batch(c.seed, s, c.batch_size, c.image_size, sc=self.sc)
            yield torch.from_numpy(imgs), self.tok(caps), torch.from_numpy(pcs)


def forward(bb, x, patches=True):
    "Backbone.forward that also returns the patch tokens entering the last block (B, N, D)."
    from microclip.backbone import VisualOut, value_value
    v = bb.clip.visual
    h = bb._embed(x)
    blocks = v.transformer.resblocks
    for blk in blocks[:-1]: h = blk(h)
    out = blocks[-1](h)
    cls = v.ln_post(out[:, 0])
    g = F.normalize(cls @ v.proj, dim=-1)
    P = v.ln_post(value_value(blocks[-1], h))[:, 1:] if patches else None
    return VisualOut(g, cls, P), h[:, 1:]


def run(run_dir, cfg: Cfg, threads=1, workers=1, ckpt_every=100, log_every=20):
    run = Path(run_dir); run.mkdir(parents=True, exist_ok=True)
    if (run / "microclip-tiny.pt").exists(): return run / "microclip-tiny.pt"
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    model = open_clip.create_model(cfg.model, pretrained=cfg.init_from)
    opt = torch.optim.AdamW(tinyclip.param_groups(model, cfg.lr, cfg.weight_decay, cfg.logit_lr), betas=(0.9, 0.98), eps=1e-6)
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    step, el0 = 0, 0.0
    if (run / "state.pt").exists():
        st = torch.load(run / "state.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"]); step, el0 = st["step"], st["elapsed"]
    bb = Backbone(model)
    head = torch.nn.Sequential(torch.nn.LayerNorm(bb.width), torch.nn.Linear(bb.width, bb.embed_dim, bias=False)) if cfg.dense_on == "hidden" else None
    if head is not None:
        opt.add_param_group(dict(params=list(head.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay))
        if step: head.load_state_dict(st["head"])
    if step: opt.load_state_dict(st["opt"])
    tok = open_clip.get_tokenizer(cfg.model)
    concept_tok = tok(w4.CONCEPTS)
    loader = torch.utils.data.DataLoader(Stream(cfg, step), batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None)
    log = open(run / "log.tsv", "a")
    if step == 0: log.write("step\tloss\tclip\tdense\tdense_acc\tlogit_scale\timg_per_s\telapsed_s\n")
    t0, seen = time.time(), 0
    model.train()
    for imgs, toks, pcs in loader:
        for g_, base in zip(opt.param_groups, (cfg.lr, cfg.lr, cfg.logit_lr, cfg.lr)): g_["lr"] = base * tinyclip.lr_factor(step, cfg.steps, cfg.warmup)
        x = tinyclip.to_input(imgs, model)
        out, hid = forward(bb, x, patches=bool(cfg.dense_weight or cfg.vv_weight))
        txt = model.encode_text(toks, normalize=True)
        lclip = tinyclip.clip_loss(out.g, txt, model.logit_scale)
        loss, ld, dacc = lclip, torch.zeros(()), float("nan")
        if cfg.dense_weight:
            ct = model.encode_text(concept_tok, normalize=True)                     # (K, d)
            pe = F.normalize(bb.project(out.patches) if head is None else head(hid), dim=-1)   # (B, N, d)
            logits = cfg.dense_scale * pe @ ct.T                                   # (B, N, K)
            tgt = pcs.view(-1)
            ld = F.cross_entropy(logits.view(-1, len(ct)), tgt, ignore_index=-1)
            loss = loss + cfg.dense_weight * ld
            with torch.no_grad():
                m = tgt >= 0; dacc = float((logits.view(-1, len(ct)).argmax(1)[m] == tgt[m]).float().mean())
        if cfg.vv_weight:
            loss = loss + cfg.vv_weight * tinyclip.clip_loss(F.normalize(bb.project(out.patches.mean(1)), dim=-1), txt, model.logit_scale)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        with torch.no_grad(): model.logit_scale.clamp_(0, math.log(100))
        step, seen = step + 1, seen + len(imgs)
        if step % log_every == 0 or step == cfg.steps:
            el = el0 + time.time() - t0
            log.write(f"{step}\t{loss.item():.4f}\t{lclip.item():.4f}\t{ld.item():.4f}\t{dacc:.3f}\t{model.logit_scale.exp().item():.2f}\t"
                      f"{seen / (time.time() - t0):.1f}\t{el:.0f}\n"); log.flush()
        if step % ckpt_every == 0 and step < cfg.steps:
            torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), head=head.state_dict() if head is not None else None,
                            step=step, elapsed=el0 + time.time() - t0), run / "state.pt")
    log.close()
    out = tinyclip.export_weights(model, run / "microclip-tiny.pt")
    (run / "state.pt").unlink(missing_ok=True)
    return out


if __name__ == "__main__":
    cfg = Cfg(**json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))
    w = run(sys.argv[1], cfg, threads=int(os.environ.get("THREADS", "1")), workers=int(os.environ.get("WORKERS", "1")))
    print("weights", w, flush=True)
    if os.environ.get("EVAL_ROOT"):
        import ev4
        r = ev4.evaluate(w, os.environ["EVAL_ROOT"], Path(sys.argv[1]) / "eval.json", cfg.model)
        print(json.dumps(r, indent=1))
