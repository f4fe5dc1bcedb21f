#!/usr/bin/env bash
# GPU acceptance: one prepared run, at most about 8 minutes on one H100/H200, to be run as it is the moment a
# GPU is available; it writes one Markdown file of tables ($OUT/gpu_acceptance.md).
#
#   bash bench/gpu_acceptance.sh [--out DIR] [--ckpt FLOWFORMER.ckpt] [--weights DIR] [--cpu-smoke]
#
# 1. Data: full-resolution VIPER and Cityscapes-Seq replicas (`flowprep synth --scale full`), ingested.
# 2. FlowFormer (random weights unless --ckpt): the plain ptlflow loop vs our batched tiles at 1280x720 and
#    2048x1024, fp32/fp16/bf16: pairs/s, peak memory, EPE change (bench/flow.py).
# 3. `vdatrain check` of dlv2-hrda-mic-viper-cs (DeepLabV2-R101) and segformer-hrda-mic-viper-cs (MiT-B5),
#    fp32 and bf16, 20 iterations: s/it, peak GB, one full-size evaluation image, the 40k schedule's hours
#    (500 val images); ImageNet weights from --weights DIR (resnet101_v1c.pth, mit_b5.pth) or random.
# 4. The DeepLabV2 check again through `torchrun --nproc-per-node 1` (the DDP code path).
# 5. The EMA teacher at the paper's geometry: stacked vs separate forwards (bench/teacher.py), and the
#    loader's crops made on the GPU (bench/pipeline.py --device cuda).
#
# --cpu-smoke: the same steps on the CPU at tiny sizes (tiny replicas, the narrow check networks at crop 64,
# FlowFormer at 76x112, 1 iteration), so the script cannot rot before a GPU is lent (tests/bench).
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
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gpu_acceptance.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
mkdir -p "$OUT"
REPORT=$OUT/gpu_acceptance.md
DATA=$OUT/data
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') $*" >&2; }

if [ $SMOKE = 1 ]; then
    SCALE=tiny ITERS=1 MODES=fp32
    SIZE=(--narrow --set source.crop=[64,64] --set target.crop=[64,64] --set model.hrda.detail_crop=[32,32]
          --set model.hrda.detail_stride=[16,16] --set eval.window=[64,64] --set eval.stride=[32,32]
          --set adapt.mic.block=8 --set train.workers=0)
else
    SCALE=full ITERS=20 MODES="fp32 bf16"
    SIZE=()
fi
WORKERS=$(nproc)

log "data: $SCALE replicas of VIPER and Cityscapes-Seq"
test -f "$DATA/raw/_truth/synth.json" || $PY -m flowprep synth --out "$DATA/raw" --scale $SCALE \
    --datasets viper,cityscapes-seq --workers "$WORKERS" >/dev/null
$PY -m flowprep ingest viper --root "$DATA/raw" --split train --out "$DATA/stores/viper_train.zarr" >/dev/null
$PY -m flowprep ingest cityscapes-seq --root "$DATA/raw" --split train --out "$DATA/stores/cityscapes-seq_train.zarr" >/dev/null
$PY -m flowprep ingest cityscapes-seq --root "$DATA/raw" --split val --out "$DATA/stores/cityscapes-seq_val.zarr" >/dev/null

{
    echo "# GPU acceptance ($(date -u '+%Y-%m-%d %H:%M UTC'))"
    echo
    $PY - <<'EOF'
import platform, torch
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"no CUDA device ({platform.processor() or 'cpu'})"
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
for recipe in dlv2-hrda-mic-viper-cs segformer-hrda-mic-viper-cs; do
    case $recipe in dlv2*) W=resnet101_v1c.pth ;; *) W=mit_b5.pth ;; esac
    for precision in $MODES; do
        log "vdatrain check $recipe $precision"
        # shellcheck disable=SC2046
        $PY -m vdatrain check $recipe "${CHECK[@]}" $(weights $W) --set train.precision=$precision \
            --json "$OUT/check-$recipe-$precision.json" >"$OUT/check-$recipe-$precision.log" 2>&1 || true
    done
done
log "vdatrain check dlv2-hrda-mic-viper-cs under torchrun --nproc-per-node 1"
# shellcheck disable=SC2046
$PY -m torch.distributed.run --nproc-per-node 1 -m vdatrain check dlv2-hrda-mic-viper-cs "${CHECK[@]}" \
    $(weights resnet101_v1c.pth) --json "$OUT/check-torchrun.json" >"$OUT/check-torchrun.log" 2>&1 || true

log "teacher: stacked vs separate forwards; crops on the device"
{
    echo
    echo "## EMA teacher: detail windows and partner frame stacked vs separate forwards"
    echo
    if [ $SMOKE = 1 ]; then $PY bench/teacher.py --geometry demo --iters 1; else $PY bench/teacher.py --geometry paper; fi
    echo
    echo "## Data pipeline: loader CPU per sample, crops made on the device"
    echo
    if [ $SMOKE = 1 ]; then
        $PY bench/pipeline.py --batches 1 --workers 0 --size 0.25 --workdir "$OUT/pipeline"
    else
        $PY bench/pipeline.py --batches 6 --workers 0,2 --workdir "$OUT/pipeline"
    fi
} >>"$REPORT" 2>"$OUT/teacher-pipeline.log" || echo "teacher/pipeline bench failed: see teacher-pipeline.log" >>"$REPORT"

{
    echo
    echo "## vdatrain check: $ITERS training iteration(s), one full-size evaluation image"
    echo
    $PY - "$OUT" <<'EOF'
import json, pathlib, sys
from vdatrain.check import table
out = pathlib.Path(sys.argv[1])
reports = []
for path in sorted(out.glob("check-*.json")):
    for r in json.loads(path.read_text()):
        r["recipe"] += " (torchrun)" if "torchrun" in path.name else ""
        reports.append(r)
missing = sorted(p.name for p in out.glob("check-*.log") if not (out / p.name.replace(".log", ".json")).exists())
print(table(reports), end="")
for name in missing:
    tail = (out / name).read_text().strip().splitlines()[-1:] or ["no output"]
    print(f"\n{name}: no report ({tail[0]})")
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
