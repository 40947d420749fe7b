"""demo.view_robustness with every RandAugment op (ops=True) for a checkpoint. usage: python ops.py WEIGHTS WORLD OUT.json"""
import sys, json, torch
from microclip import demo
torch.set_num_threads(1)
r = demo.view_robustness(sys.argv[1], sys.argv[2], n=600, ops=True, progress=False)
json.dump(r, open(sys.argv[3], "w"), indent=1); print(json.dumps(r, indent=1))
