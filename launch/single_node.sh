#!/usr/bin/env bash
# Train on one node: composer -n NPROC train.py YAML [key=value ...]
#
# usage: launch/single_node.sh [--dry-run] YAML [key=value ...]
#   --dry-run   print the command (one shell-quoted line) instead of running it
#   --help      this text
#
# Environment (defaults in brackets):
#   NPROC                   processes on this node [one per GPU: CUDA_VISIBLE_DEVICES,
#                           else `nvidia-smi -L`; 1 without GPUs]
#   FSDP_VERSION            composer's FSDP implementation [2]
#   OMP_NUM_THREADS         CPU threads per process [cores / NPROC]
#   TOKENIZERS_PARALLELISM  [false]
#   COMPOSER_BIN            the composer launcher [composer on PATH, else .venv/bin/composer]
#   DRY_RUN=1               same as --dry-run
#
# example: NPROC=8 launch/single_node.sh yamls/prune.yaml max_duration=3200ba
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
require_yaml_file
NPROC=${NPROC:-$(gpu_count)}
require_int NPROC 1
set_runtime_defaults
find_bin COMPOSER_BIN composer

run_command "$COMPOSER_BIN" -n "$NPROC" "$TRAIN_PY" "${TRAIN_ARGS[@]}"
