#!/bin/bash
# usage: launch.sh NAME 'JSON cfg' [world]   -> runs/NAME/{run.log,log.tsv,microclip-tiny.pt,eval.json}
cd /work/main/data/_scratch/v4
N=$1; C=$2; W=${3:-worlds/v4}
mkdir -p runs/$N
echo "$C" > runs/$N/cmd.json
EVAL_ROOT=$W THREADS=${THREADS:-1} WORKERS=1 nohup nice -n 19 ../../../.venv/bin/python pre4.py runs/$N "$C" > runs/$N/run.log 2>&1 &
echo $! > runs/$N/pid
