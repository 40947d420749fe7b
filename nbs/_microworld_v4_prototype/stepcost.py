"""Relative cost of one pretraining update (forward+backward, batch 64, 1 thread): v3-style (CLIP + mean-vv CLIP loss)
vs v4 dense (CLIP + per-patch concept loss), on the same fixed batch; also the data generation per batch.
Interleaved repeats, min time reported (robust to other load)."""
import sys, time, json, torch, torch.nn.functional as F
sys.path.insert(0, '.')
import pre4, w4, open_clip
from microclip import tinyclip, microworld as mw
torch.set_num_threads(1)
imgs, caps, pcs = w4.corpus_batch(0, 0, 64)
tok = open_clip.get_tokenizer('microclip-tiny'); toks = tok(caps); ct = tok(w4.CONCEPTS); pcs = torch.from_numpy(pcs)
res = {}
def step(kind):
    torch.manual_seed(0); m = open_clip.create_model('microclip-tiny'); bb = pre4.Backbone(m)
    x = tinyclip.to_input(torch.from_numpy(imgs), m)
    def f():
        out, _ = pre4.forward(bb, x, True); t = m.encode_text(toks, normalize=True)
        l = tinyclip.clip_loss(out.g, t, m.logit_scale)
        if kind == 'v3': l = l + tinyclip.clip_loss(F.normalize(bb.project(out.patches.mean(1)), dim=-1), t, m.logit_scale)
        else:
            c = m.encode_text(ct, normalize=True); pe = F.normalize(bb.project(out.patches), dim=-1)
            l = l + F.cross_entropy((20 * pe @ c.T).view(-1, len(c)), pcs.view(-1), ignore_index=-1)
        l.backward()
    return f
fs = {'v3 (clip + mean-vv)': step('v3'), 'v4 dense (clip + per-patch concepts)': step('dense')}
def gen3(): mw.corpus_batch(0, 0, 64)
def gen4(): w4.corpus_batch(0, 0, 64)
fs.update({'data v3 batch': gen3, 'data v4 batch': gen4})
best = {k: 1e9 for k in fs}
for _ in range(5):
    for k, f in fs.items():
        t = time.perf_counter(); f(); best[k] = min(best[k], time.perf_counter() - t)
print(json.dumps({k: round(v, 3) for k, v in best.items()}, indent=1))
