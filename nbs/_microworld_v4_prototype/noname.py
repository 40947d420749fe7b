"""Zero-shot without species names: the description head with every name replaced by 'this bird' (generic sentences
dropped), and an attribute-prompt head built from the species table. usage: python noname.py WEIGHTS WORLD [W4_SPECIES]"""
import sys, json, re, torch, numpy as np
from pathlib import Path
from PIL import Image
sys.path.insert(0, '.')
from microclip import tinyclip as t; t.register_configs()
from microclip.backbone import Backbone
from microclip.heads import encode_descriptions, mean_head
from microclip.datasets import load_split
from microclip.views import eval_transform
import w4
torch.set_num_threads(1)
bb = Backbone.from_name("microclip-tiny", pretrained=sys.argv[1]).eval(); root = Path(sys.argv[2])
classes = (root / "classes.txt").read_text().strip().split("\n")
desc = json.loads((root / "descriptions.json").read_text())
strip = {c: [s.replace(f"The {c}", "This bird").replace(f"the {c}", "this bird").replace(f"A {c}", "A bird").replace(c, "bird")
             for s in v if not any(g.format(name=c) == s for g in w4.GENERIC)] for c, v in desc.items()}
ds = load_split("microworld", "test", root=root); ev = eval_transform(bb.image_size, bb.mean, bb.std)
x = torch.stack([ev(Image.open(p).convert("RGB")) for p, _ in ds.samples]); y = torch.tensor([c for _, c in ds.samples])
with torch.no_grad(): g = torch.cat([bb(x[i:i+300], patches=False).g for i in range(0, len(x), 300)])
acc = lambda W: round(float(((g @ W.T).argmax(1) == y).float().mean()) * 100, 2)
W_full = mean_head(*encode_descriptions(bb.encode_text, desc, classes))
W_strip = mean_head(*encode_descriptions(bb.encode_text, strip, classes))
rng = np.random.default_rng(0)
attr = {c: ["a bird with " + w4.mw.join_phrases([w4.slot_phrase(s, w4.SPECIES[c], rng, "both" if len(w4.SLOTS[s]) > 1 else "colour") for s in w4.SLOTS]) + "."] for c in classes}
W_attr = mean_head(*encode_descriptions(bb.encode_text, attr, classes))
print(json.dumps({"desc mean (with names)": acc(W_full), "desc mean, names removed": acc(W_strip), "all-attribute prompt, no name": acc(W_attr)}))
