"""Print a markdown table of eval jsons vs issue #16's targets. usage: python table.py label=path.json ..."""
import json, sys
rows = []
def best_loc(r):
    keys = [k[len("ncut IoU "):] for k in r if k.startswith("ncut IoU ")]
    k = max(keys, key=lambda k: r[f"ncut IoU {k}"])
    kp = max(keys, key=lambda k: r[f"soap peak on object {k}"])
    return k, r[f"ncut IoU {k}"], r[f"soap peak on object {k}"], kp, r[f"soap peak on object {kp}"]
print("| design | probe ≥90 | best ZS (head) | gap 15–35 | min class ≥20 (best head) | [CLS] zs | [FG] zs (released) | FG<CLS | weak / strong view | ratio ≥0.6 | released NCut IoU / peak | best NCut IoU ≥0.45 (input) / its peak | best peak ≥70 (input) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for a in sys.argv[1:]:
    lab, p = a.rsplit("=", 1); r = json.load(open(p))
    b = r["best zs head"]; k, i, pk, kp, pp = best_loc(r)
    print(f"| {lab} | {r['linear_probe']:.1f} | {r['zs '+b]:.1f} ({b}) | {r['gap probe - best zs']:.1f} | {r['zs '+b+' min class']:.0f} | "
          f"{r['[CLS] zs (desc mean)']:.1f} | {r['[FG] zs (desc mean, released NCut)']:.1f} | {'yes' if r['[FG] zs (desc mean, released NCut)'] < r['[CLS] zs (desc mean)'] else 'no'} | "
          f"{r['views']['weak']:.1f} / {r['views']['strong (released)']:.1f} | {r['strong/weak ratio']:.2f} | "
          f"{r['ncut IoU raw values [std,invert]']:.2f} / {r['soap peak on object raw values [std,invert]']:.0f} | {i:.2f} ({k}) / {pk:.0f} | {pp:.0f} ({kp}) |")
