#!/usr/bin/env bash
# The GPU checks and the GPU benchmarks in one go, for a machine with a CUDA GPU and no ROS
# (the learning core needs only torch, numpy, opencv and PyYAML):
#   1. test/test_cuda.py (mixed-precision training, fp16 loss-scale resume, CUDA inference against
#      the CPU, DDP ranks on CUDA);
#   2. the accuracy ablation (bench/run_all.py): every configuration in $CONFIGS on KITTI and
#      7-Scenes, the same wall-clock budget each ($MINUTES), $JOBS runs at a time sharing the GPU;
#   3. speed (inference on CPU and CUDA fp32/fp16, training step fp32/bf16) for $SPEED_CONFIGS.
# Results (logs, JSON, markdown tables) go to $OUT. The data: $SFM_ROS_DATA, e.g. made by
# bench/pack_data.py where the raw ../shared/data cannot travel.
#
#   SFM_ROS_DATA=.benchdata OUT=gpu_out bash bench/gpu_run.sh
set -u
PY=${PYTHON:-python3}
OUT=${OUT:-gpu_out}
MINUTES=${MINUTES:-2}
JOBS=${JOBS:-10}
P=paper
CONFIGS=${CONFIGS:-"$P,$P+loss.photometric=ssim_l1,$P+loss.reduce_sources=min,$P+loss.automask=true,$P+loss.smooth=edge_aware+loss.smooth_weight=0.001,$P+loss.full_res=true,$P+loss.geometry_weight=0.1+loss.geometry_mask=true,default,default+loss.geometry_weight=0.1+loss.geometry_mask=true,default+model.depth_arch=resnet+model.pose_arch=pair"}
ONLY=${ONLY:-kitti,7scenes}            # datasets of the accuracy runs
STAGES=${STAGES:-tests,accuracy,speed}  # which of the three stages to run
SPEED_CONFIGS=${SPEED_CONFIGS:-"paper,default+model.width_mult=0.5,default+model.depth_arch=resnet+model.pose_arch=pair"}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
log() { echo "[gpu_run $(date +%H:%M:%S)] $*"; }

log "environment"
{ nvidia-smi; $PY -c "import torch, cv2, numpy, yaml; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'cv2', cv2.__version__, 'numpy', numpy.__version__)"; } > "$OUT/env.txt" 2>&1
tail -1 "$OUT/env.txt"

if [[ $STAGES == *tests* ]]; then
  log "test/test_cuda.py"
  timeout 300 $PY -m pytest -q -p no:cacheprovider test/test_cuda.py > "$OUT/pytest.txt" 2>&1
  log "pytest exit $?: $(tail -1 "$OUT/pytest.txt")"
fi

if [[ $STAGES == *accuracy* ]]; then
  log "accuracy ablation ($ONLY): $MINUTES min a run, $JOBS at a time"
  timeout $(( (2 * ${MINUTES%.*} + 4) * 60 + 240 )) $PY bench/run_all.py --configs "$CONFIGS" --minutes "$MINUTES" \
      --jobs "$JOBS" --only "$ONLY" --no-append --out-json "$OUT/ablation.json" > "$OUT/ablation.md" 2> "$OUT/ablation.log"
  log "ablation exit $?"
fi

[[ $STAGES == *speed* ]] || exit 0
log "speed"
timeout 300 $PY bench/run_all.py --configs "$SPEED_CONFIGS" --only speed --node-seconds 0 --train-steps 20 \
    --no-append --out-json "$OUT/speed.json" > "$OUT/speed.md" 2> "$OUT/speed.log"
log "speed exit $?"
