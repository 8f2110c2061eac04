#!/bin/bash
# gpu_lease.sh: issue 13's one-call GPU run. It runs several ASBM trainings at once on one GPU
# (torch/asbm_train.py --device cuda), each phase capped by --phase-seconds. The model checkpoints
# come back to $OUT with their networks in f16, ready for `backend import`.
#
# Prepare the data on a machine with Go, in the repository root (name the folder in the device
# tool's carry list, and ignore it in .git/info/exclude):
#   go run ./backend sample --data emoji:faces --out .gpu/data/emoji-faces.npy
#   mkdir -p .gpu/data/mnist && cp "$(go env GOMODCACHE)"/github.com/petar/*/data/train-images-idx3-ubyte.gz .gpu/data/mnist/
# Then, on the GPU machine: DEV=cuda S1=110 S2=150 DI=80 bash torch/gpu_lease.sh
# Settings (environment): DEV (cuda or cpu), S1, S2, DI (stage 1, stage 2 and distillation caps in
# seconds; the baseline runs stage 2's epochs), DATA (default .gpu/data), OUT (default /tmp/gpuout),
# PY (default python3), SMALL=1 (tiny nets and sets, to rehearse the script on a CPU), RUNS (which of
# faces-large, faces-small, digits-large to train, default all three, as issue 13's run did; one
# alone gets the whole GPU) and EMA (the networks' EMA decay, default 0.999 as run; for runs of a
# few thousand steps 0.995: at 0.999 the EMA still holds 0.999^n of the random initial weights,
# 7.7% after 2,560 steps, README "GPU-trained models").
set -u
DEV=${DEV:-cuda}; S1=${S1:-120}; S2=${S2:-130}; DI=${DI:-75}; OUT=${OUT:-/tmp/gpuout}; DATA=${DATA:-.gpu/data}
PY=${PY:-python3}; EMA=${EMA:-0.999}; RUNS=${RUNS:-faces-large faces-small digits-large}
read -ra runs <<< "$RUNS"
for m in "${runs[@]}"; do
  case $m in faces-large|faces-small|digits-large) ;; *) echo "RUNS: unknown run $m (faces-large, faces-small, digits-large)"; exit 2 ;; esac
done
mkdir -p "$OUT"; R=/tmp/gpuruns; rm -rf $R; mkdir -p $R
export PYTHONUNBUFFERED=1
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c 'import torch; print(torch.__version__, torch.cuda.is_available())') 2>&1 | tee "$OUT/env.txt"
common="--device $DEV --seed 917 --score-scale sigma --beta0 0.1 --beta1 4 --am-epochs 10 --cm-epochs 3 --eval-start 12 --eval-samples 1024 --resample 4096 --buffer 16384 --forward-nfe 20 --cm-nfe 20 --stage1-epochs 400 --stage2-epochs 4000 --couplings 4096 --stage2-passes 4 --stage2-nfe 20 --distill-epochs 2000 --distill-samples 2048 --distill-ode-steps 16 --distill-passes 4 --distill-ema 0.99 --batch 128 --fourier 16 --time-emb 64 --mults 1,2,2 --checkpoint-every 1e9"
big="--base 32 --res-blocks 2 --groups 8 --lr 5e-4 --ema $EMA"
small="--base 12 --res-blocks 1 --groups 2 --lr 1e-3 --ema $EMA"
if [ "${SMALL:-0}" = 1 ]; then
  common="$common --resample 256 --buffer 512 --couplings 256 --distill-samples 128 --eval-samples 64"
  big="--base 8 --res-blocks 1 --groups 2 --lr 5e-4 --ema $EMA"; small="--base 4 --res-blocks 1 --groups 2 --lr 1e-3 --ema $EMA"
fi
caps="--phase-seconds stage1=$S1,stage2=$S2,distill=$DI"
# Smoke: every phase and the checkpoint on a tiny net, in seconds; a failure ends the call at once.
$PY torch/asbm_train.py --data npy:$DATA/emoji-faces.npy --size 32 --device $DEV --base 4 --groups 2 --res-blocks 1 \
  --stage1-epochs 2 --eval-start 1 --eval-samples 64 --resample 128 --buffer 256 --stage2-epochs 1 --couplings 128 \
  --distill-epochs 1 --distill-samples 64 --distill-ode-steps 2 --run $R/smoke --out $R/smoke/model.pt > "$OUT/smoke.log" 2>&1 \
  || { cat "$OUT/smoke.log"; exit 1; }
t0=$(date +%s)
for m in "${runs[@]}"; do
  case $m in
    faces-large) args="--data npy:$DATA/emoji-faces.npy --size 32 $big" ;;
    faces-small) args="--data npy:$DATA/emoji-faces.npy --size 32 $small" ;;
    digits-large) args="--data idx:$DATA/mnist --size 28 $big" ;;
  esac
  $PY torch/asbm_train.py $args $common $caps --run $R/$m --out $R/$m.pt > $R/$m.log 2>&1 &
done
trainers=$(jobs -p)
(while sleep 30; do
  echo "t=$(( $(date +%s) - t0 ))s"
  for m in "${runs[@]}"; do echo "  $m: $(tail -n 1 $R/$m.log)"; done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
done) &
monitor=$!
wait $trainers
kill $monitor
echo "all done at t=$(( $(date +%s) - t0 ))s"
for m in "${runs[@]}"; do
  tail -n 4 $R/$m.log
  [ -f $R/$m.pt ] && $PY - "$R/$m.pt" "$OUT/$m.pt" <<'PYEOF'
import sys, torch
ck = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
ck["nets"] = {k: {n: v.half() for n, v in sd.items()} for k, sd in ck["nets"].items()}
torch.save(ck, sys.argv[2])
print("wrote", sys.argv[2])
PYEOF
done
tar czf "$OUT/logs.tgz" -C $R $(cd $R && ls *.log */train.jsonl)
ls -la "$OUT"
