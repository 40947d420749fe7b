#!/bin/bash
# usage: midevel.sh RUN  -> exports runs/RUN/state.pt to runs/RUN/mid-<step>.pt and evaluates it (600 view images)
cd /work/main/data/_scratch/v4
R=runs/$1; W=${2:-worlds/v4}
S=$(../../../.venv/bin/python -c "
import torch,sys; sys.path.insert(0,'.')
from microclip import tinyclip as t; t.register_configs(); import open_clip
st=torch.load('$R/state.pt',map_location='cpu',weights_only=False); m=open_clip.create_model('microclip-tiny'); m.load_state_dict(st['model'])
t.export_weights(m,'$R/mid-%d.pt'%st['step']); print(st['step'])" 2>/dev/null)
N_VIEWS=600 THREADS=1 nice -n 19 ../../../.venv/bin/python ev4.py $R/mid-$S.pt $W $R/eval-mid-$S.json > $R/eval-mid-$S.log 2>&1
echo $R/eval-mid-$S.json
