#!/usr/bin/env bash
# One-command GPU check (issue 25): installs the wheels of benchmarks/device/wheels.txt from
# <repo>/.whl/ into a --target folder (skipped when the imports already work), then runs, each under
# its own timeout and within one overall budget:
#   (a) benchmarks/gpu_throughput.py          plain / pruning / exported, bf16 SDPA, 1.1B shape
#   (b) the same with flash_attention_2       only if `import flash_attn` works (else a skipped row)
#   (c) benchmarks/kd_overhead.py             (CPU-only benchmark: it never moves to CUDA)
#   (d) benchmarks/device/plan_vs_measured.py `shear plan` of (a)'s pruning run vs its measured peak
# and writes check.md and check.json into --out DIR (default $OUT, else benchmarks/results/device).
#   bash benchmarks/device/check.sh [--smoke] [--out DIR]
# --smoke: CPU, tiny models (gpu_throughput --smoke; kd_overhead 1 step of 1 x 32), a minute or two.
# Environment: PYTHON (default python3), DEVICE_SITE (default /tmp/site), CHECK_BUDGET_S (default 470).
set -u
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 2
SMOKE=0
OUTDIR=${OUT:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1 ;;
    --out) OUTDIR=$2; shift ;;
    --out=*) OUTDIR=${1#--out=} ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
OUTDIR=${OUTDIR:-$REPO/benchmarks/results/device}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd)
PY=${PYTHON:-python3}
SITE=${DEVICE_SITE:-/tmp/site}
BUDGET=${CHECK_BUDGET_S:-470}
START=$(date +%s)
WORK=$(mktemp -d /tmp/device-check.XXXXXX)
: > "$OUTDIR/parts.tsv"
export WANDB_MODE=offline TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

record() {  # name status rc seconds command log result note
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUTDIR/parts.tsv"
}
imports_ok() {
  "$PY" - <<'PY' >/dev/null 2>&1
import composer, llmfoundry, streaming, transformers, composer_plugins
assert transformers.__version__.startswith('4.51'), transformers.__version__
PY
}

# ---- environment: wheels, then import-only stand-ins for what is too big to carry
t0=$(date +%s)
install_note='imports already worked: nothing installed'
if ! imports_ok; then
  if [ -d "$SITE/composer" ] && [ -d "$SITE/llmfoundry" ]; then
    install_note="reused $SITE"
  elif ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "$REPO"/.whl/*.whl > "$OUTDIR/install.log" 2>&1
    pip_rc=$?
    install_note="installed $(ls "$REPO"/.whl/*.whl | wc -l) wheels into $SITE (pip rc $pip_rc)"
  else
    install_note="no wheels in $REPO/.whl (run benchmarks/device/fetch_wheels.sh where PyPI is reachable)"
  fi
  export PYTHONPATH="$SITE:$PYTHONPATH"
fi
shimmed=''
mkdir -p "$WORK/shims"
for mod in mlflow datasets pandas pyarrow; do
  if ! "$PY" -c "import $mod" >/dev/null 2>&1; then
    ln -s "$REPO/benchmarks/device/shims/$mod" "$WORK/shims/$mod"; shimmed="$shimmed $mod"
  fi
done
[ -n "$shimmed" ] && export PYTHONPATH="$PYTHONPATH:$WORK/shims" && install_note="$install_note; import-only stand-ins:$shimmed"
"$PY" - > "$OUTDIR/environment.json" 2> "$OUTDIR/environment.log" <<'PY'
import json, platform, sys
info = {'python': platform.python_version()}
for name in ('torch', 'transformers', 'composer', 'llmfoundry', 'streaming', 'flash_attn'):
    try:
        module = __import__(name)
        info[name] = getattr(module, '__version__', '?')
    except Exception as err:  # noqa: BLE001
        info[name] = f'unavailable: {type(err).__name__}: {str(err)[:120]}'
import torch
info['cuda'] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
print(json.dumps(info))
PY
env_rc=$?
record environment "$([ $env_rc = 0 ] && imports_ok && echo ok || echo failed)" "$env_rc" "$(( $(date +%s) - t0 ))" \
  "wheels + imports" "$OUTDIR/environment.log" "$OUTDIR/environment.json" "$install_note"
HAS_CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

# ---- parts
run_part() {  # name timeout_s result_file note command...
  local name=$1 limit=$2 result=$3 note=$4; shift 4
  local left=$(( BUDGET - ($(date +%s) - START) ))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    record "$name" skipped '' 0 "$*" '' '' "check budget of ${BUDGET}s spent"; return
  fi
  local log="$OUTDIR/$name.log" t=$(date +%s)
  echo "== $name (timeout ${limit}s): $*" >&2
  if [ "${result##*.}" = json ]; then
    timeout -k 10 "$limit" "$@" > "$WORK/$name.stdout" 2> "$log"; rc=$?
    cat "$WORK/$name.stdout" >> "$log"
    tail -n 1 "$WORK/$name.stdout" > "$result"
  else
    timeout -k 10 "$limit" "$@" > "$log" 2>&1; rc=$?
  fi
  local status=ok
  [ $rc -ne 0 ] && status=failed
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status=timeout && note="${note:+$note; }killed after ${limit}s"
  record "$name" "$status" "$rc" "$(( $(date +%s) - t ))" "$*" "$log" "$result" "$note"
}

if [ $SMOKE = 1 ]; then
  GT=(--smoke); KD=(--steps 1 --batch 1 --seq 32); PLAN=(--smoke)
  T_GT=240; T_FA=120; T_KD=240; T_PLAN=120
else
  # 2 x 4096 tokens per step: `shear plan` puts the 1.1B pruning run at 72 GiB with 4 x 4096 (too close to an
  # H100's 78 GiB, one process has no activation checkpointing) and at 46 GiB with 2 x 4096
  GT=(--batch-size 2); KD=(--steps 5); PLAN=(--batch-size 2)
  T_GT=210; T_FA=150; T_KD=80; T_PLAN=45
  [ "$HAS_CUDA" = 1 ] || echo "check.sh: no CUDA device; the full check needs one (use --smoke on a CPU)" >&2
fi

run_part gpu_throughput "$T_GT" "$OUTDIR/gpu_throughput.md" "sdpa" \
  "$PY" benchmarks/gpu_throughput.py "${GT[@]}" --out "$OUTDIR/gpu_throughput.md"

if "$PY" -c "import flash_attn" >/dev/null 2>&1; then
  run_part gpu_throughput_fa2 "$T_FA" "$OUTDIR/gpu_throughput_fa2.md" "flash_attention_2" \
    "$PY" benchmarks/gpu_throughput.py "${GT[@]}" --override model.attn_implementation=flash_attention_2 \
    --out "$OUTDIR/gpu_throughput_fa2.md"
else
  record gpu_throughput_fa2 skipped '' 0 "" "" "" "skipped: import flash_attn failed (not installed)"
fi

run_part kd_overhead "$T_KD" "$OUTDIR/kd_overhead.json" "CPU benchmark (no CUDA in kd_overhead.py)" \
  "$PY" benchmarks/kd_overhead.py "${KD[@]}"

run_part plan_vs_measured "$T_PLAN" "$OUTDIR/plan_vs_measured.json" "" \
  "$PY" benchmarks/device/plan_vs_measured.py "${PLAN[@]}" --measured "$OUTDIR/gpu_throughput.json"

HEADER="# Device check ($([ $SMOKE = 1 ] && echo 'CPU smoke: tiny models, not GPU numbers' || echo full))

$(date -u +%Y-%m-%dT%H:%MZ); $(cat "$OUTDIR/environment.json" 2>/dev/null || echo 'environment unknown'); total $(( $(date +%s) - START )) s"
"$PY" benchmarks/device/summarize.py "$OUTDIR" "$HEADER"
rc=$?
rm -rf "$WORK"
grep -qv -P '\t(ok|skipped)\t' "$OUTDIR/parts.tsv" && exit 1
exit $rc
