#!/usr/bin/env bash
# GPU acceptance: one prepared run, about 10 minutes on one H100/H200, to be run as it is the moment a GPU is
# available; it writes one Markdown file of tables ($OUT/gpu_acceptance.md).
#
#   bash bench/gpu_acceptance.sh [--out DIR] [--ckpt FLOWFORMER.ckpt] [--weights DIR] [--cpu-smoke]
#
# 1. Data: full-resolution VIPER and Cityscapes-Seq replicas (`flowprep synth --scale full`), ingested.
# 2. FlowFormer (random weights unless --ckpt): the plain ptlflow loop vs our batched tiles at 1280x720 and
#    2048x1024, fp32 / TF32 / fp16 / bf16: pairs/s, peak memory, end-point-error change (bench/flow.py).
# 3. Each GPU setting side by side, `vdatrain check` at the paper's geometry (s/it, peak GiB, one full-size
#    evaluation image, the 40k schedule's hours for 500 val images), every toggle against the recipe's own:
#    DeepLabV2-R101 HRDA+MIC (dlv2-hrda-mic-viper-cs): default (TF32 and cuDNN's search on, fp32), TF32 off,
#    cuDNN's search off, channels-last, bf16, bf16 + channels-last, the teacher's per-window statistics;
#    MiT-B5 HRDA+MIC (segformer-hrda-mic-viper-cs): default, TF32 off, bf16, bf16 + activation checkpointing.
#    DINOv3 ViT-L/16 HRDA+MIC (dinov3l-hrda-mic-viper-cs): default, bf16, bf16 + activation checkpointing.
#    ImageNet weights from --weights DIR (resnet101_v1c.pth, mit_b5.pth, dinov3_vitl16_pretrain_lvd1689m.pth),
#    or random.
# 4. DDP: the DeepLabV2 check through `torchrun --nproc-per-node 2` when two GPUs are visible (SyncBatchNorm, one
#    gradient all-reduce per iteration, the teacher on the global batch); with one GPU this is said, not run.
# 5. The loader's crops made on the GPU (bench/pipeline.py --device cuda).
# 6. Backbones side by side (bench/backbones.py): DeepLabV2-R101, MiT-B5, DINOv3 ViT-L/16 with HRDA and
#    ViT-L/16 single-scale at 2048x1024: parameters, FLOPs, s/image; one training step at 1024 crops, fp32 and
#    bf16, activation checkpointing off and on: s/step, peak GiB.
# 7. `vdatrain predict` against the model's forward alone at 1280x720 and 2048x1024 (bench/predict.py).
#
# --cpu-smoke: the same steps on the CPU at tiny sizes (tiny replicas, the narrow check networks at crop 64,
# FlowFormer at 76x112, 1 iteration; DDP with 2 gloo processes), so the script cannot rot before a GPU is lent
# (tests/vdatrain/test_gpu_acceptance.py; about 45 s on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=bench-data/gpu_acceptance
CKPT=""
WEIGHTS=""
SMOKE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --ckpt) CKPT=$2; shift 2 ;;
        --weights) WEIGHTS=$2; shift 2 ;;
        --cpu-smoke) SMOKE=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "gpu_acceptance.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
REPORT=$OUT/gpu_acceptance.md
DATA=$OUT/data
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $*" >&2; }

if [ $SMOKE = 1 ]; then
    SCALE=tiny ITERS=1
    DLV2_MODES=default,bf16 SEGFORMER_MODES=default DINOV3_MODES=default
    SIZE=(--narrow --set source.crop=[64,64] --set target.crop=[64,64] --set model.hrda.detail_crop=[32,32]
          --set model.hrda.detail_stride=[16,16] --set eval.window=[64,64] --set eval.stride=[32,32]
          --set adapt.mic.block=8 --set train.workers=0)
    JOBS=(--jobs 2 --threads 1)
else
    SCALE=full ITERS=8
    DLV2_MODES=default,tf32-off,cudnn-search-off,channels-last,bf16,bf16+channels-last,teacher-per-window
    SEGFORMER_MODES=default,tf32-off,bf16,bf16+ckpt
    DINOV3_MODES=default,bf16,bf16+ckpt
    SIZE=()
    JOBS=(--jobs 1)
fi

log "data: $SCALE replicas of VIPER and Cityscapes-Seq"
test -f "$DATA/raw/_truth/synth.json" || $PY -m flowprep synth --out "$DATA/raw" --scale $SCALE \
    --datasets viper,cityscapes-seq --workers "$(nproc)" >/dev/null
$PY -m flowprep ingest viper --root "$DATA/raw" --split train --out "$DATA/stores/viper_train.zarr" >/dev/null
$PY -m flowprep ingest cityscapes-seq --root "$DATA/raw" --split train --out "$DATA/stores/cityscapes-seq_train.zarr" >/dev/null
$PY -m flowprep ingest cityscapes-seq --root "$DATA/raw" --split val --out "$DATA/stores/cityscapes-seq_val.zarr" >/dev/null

{
    echo "# GPU acceptance ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    $PY - <<'EOF'
import platform, torch
n = torch.cuda.device_count()
dev = f"{n} x {torch.cuda.get_device_name(0)}" if n else f"no CUDA device ({platform.processor() or 'cpu'})"
print(f"torch {torch.__version__}, {dev}")
EOF
    echo
    echo "## FlowFormer: plain ptlflow loop vs batched tiles"
    echo
} >"$REPORT"
log "FlowFormer throughput"
if [ $SMOKE = 1 ]; then
    $PY bench/flow.py --smoke ${CKPT:+--ckpt "$CKPT"} >>"$REPORT"
else
    $PY bench/flow.py --seconds 2 ${CKPT:+--ckpt "$CKPT"} >>"$REPORT"
fi

weights() {  # the recipe's ImageNet weights from --weights, or random initialisation
    if [ -n "$WEIGHTS" ]; then echo "--set model.pretrained=$WEIGHTS/$1"; else echo "--set model.pretrained=null"; fi
}
CHECK=(--iters $ITERS --val-images 500 --set data_root="$DATA/stores" "${SIZE[@]}")
log "vdatrain check dlv2-hrda-mic-viper-cs: $DLV2_MODES"
# shellcheck disable=SC2046
$PY -m vdatrain check dlv2-hrda-mic-viper-cs "${CHECK[@]}" "${JOBS[@]}" $(weights resnet101_v1c.pth) \
    --modes "$DLV2_MODES" --json "$OUT/check-dlv2.json" >"$OUT/check-dlv2.log" 2>&1 || true
log "vdatrain check segformer-hrda-mic-viper-cs: $SEGFORMER_MODES"
# shellcheck disable=SC2046
$PY -m vdatrain check segformer-hrda-mic-viper-cs "${CHECK[@]}" "${JOBS[@]}" $(weights mit_b5.pth) \
    --modes "$SEGFORMER_MODES" --json "$OUT/check-segformer.json" >"$OUT/check-segformer.log" 2>&1 || true

log "vdatrain check dinov3l-hrda-mic-viper-cs: $DINOV3_MODES"
# shellcheck disable=SC2046
$PY -m vdatrain check dinov3l-hrda-mic-viper-cs "${CHECK[@]}" "${JOBS[@]}" $(weights dinov3_vitl16_pretrain_lvd1689m.pth) \
    --modes "$DINOV3_MODES" --json "$OUT/check-dinov3.json" >"$OUT/check-dinov3.log" 2>&1 || true

GPUS=$($PY -c 'import torch; print(torch.cuda.device_count())')
DDP_NOTE=""
if [ "$GPUS" -ge 2 ] || [ $SMOKE = 1 ]; then  # the smoke runs 2 gloo processes on the CPU
    log "vdatrain check dlv2-hrda-mic-viper-cs under torchrun --nproc-per-node 2"
    # shellcheck disable=SC2046
    OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc-per-node 2 -m vdatrain check \
        dlv2-hrda-mic-viper-cs "${CHECK[@]}" $(weights resnet101_v1c.pth) \
        --json "$OUT/check-ddp.json" >"$OUT/check-ddp.log" 2>&1 || true
else
    DDP_NOTE="DDP with 2 processes not measured: $GPUS GPU visible (it needs two; its code path is tested on 2 CPU processes)."
fi

log "crops on the device"
{
    echo
    echo "## Data pipeline: loader CPU per sample, crops made on the device"
    echo
    if [ $SMOKE = 1 ]; then
        $PY bench/pipeline.py --batches 1 --workers 0 --size 0.25 --workdir "$OUT/pipeline" --formats store
    else
        $PY bench/pipeline.py --batches 6 --workers 0,2 --workdir "$OUT/pipeline"
    fi
} >>"$REPORT" 2>"$OUT/pipeline.log" || echo "pipeline bench failed: see pipeline.log" >>"$REPORT"

# bench_section NAME TITLE ARGS...: one benchmark's table appended to the report under TITLE (its stderr in
# NAME.log); a failure is said in the report and the other sections still run
bench_section() {
    local name=$1 title=$2; shift 2
    log "$title"
    { printf '\n## %s\n\n' "$title"; $PY "bench/$name.py" "$@"; } >>"$REPORT" 2>"$OUT/$name.log" \
        || echo "$name bench failed: see $name.log" >>"$REPORT"
}
if [ $SMOKE = 1 ]; then
    bench_section backbones "Backbones at the paper's evaluation geometry" --models vitl --no-time
    bench_section predict "vdatrain predict against the forward alone" --sizes 1280x720 --frames 2 \
        --model deeplabv2_check --workdir "$OUT/predict"
else
    bench_section backbones "Backbones at the paper's evaluation geometry" --images 3 --train
    bench_section predict "vdatrain predict against the forward alone" --frames 30 --workdir "$OUT/predict"
fi

{
    echo
    echo "## vdatrain check: each setting against the recipe's own, $ITERS training iteration(s), one full-size evaluation image"
    echo
    $PY - "$OUT" "$DDP_NOTE" <<'EOF'
import json, pathlib, sys
from vdatrain.check_table import table
out, note = pathlib.Path(sys.argv[1]), sys.argv[2]
reports = []
for path in sorted(out.glob("check-*.json")):
    for r in json.loads(path.read_text()):
        r["recipe"] += " (torchrun, 2 processes)" if "ddp" in path.name else ""
        reports.append(r)
missing = sorted(p.name for p in out.glob("check-*.log") if not (out / p.name.replace(".log", ".json")).exists())
print(table(reports), end="")
for name in missing:
    tail = (out / name).read_text().strip().splitlines()[-1:] or ["no output"]
    print(f"\n{name}: no report ({tail[0]})")
if note:
    print(f"\n{note}")
EOF
} >>"$REPORT"
log "wrote $REPORT"
cat "$REPORT"
# exit status: 0 only when every check ran
$PY - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
logs = list(out.glob("check-*.log"))
ok = all((out / p.name.replace(".log", ".json")).exists() and all(r["ok"] for r in json.loads(
    (out / p.name.replace(".log", ".json")).read_text())) for p in logs)
sys.exit(0 if ok and logs else 1)
EOF
