#!/usr/bin/env bash
# Train on several nodes with the composer launcher. Run it once on every node, with the
# same settings except NODE_RANK:
#   composer --world_size NNODES*NPROC --node_rank NODE_RANK --master_addr MASTER_ADDR \
#            --master_port MASTER_PORT -n NPROC train.py YAML [key=value ...]
#
# usage: launch/multi_node_composer.sh [--dry-run] YAML [key=value ...]
#   --dry-run   print the command (one shell-quoted line) instead of running it
#   --help      this text
#
# Environment (defaults in brackets):
#   NNODES                  number of nodes (required)
#   NODE_RANK               this node's rank, 0 .. NNODES-1 (required)
#   MASTER_ADDR             host name or address of node 0 (required)
#   MASTER_PORT             free TCP port on node 0 [29500]
#   NPROC                   processes per node, the same on every node [one per GPU:
#                           CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`; 1 without GPUs]
#   FSDP_VERSION            composer's FSDP implementation [2]
#   OMP_NUM_THREADS         CPU threads per process [cores / NPROC]
#   TOKENIZERS_PARALLELISM  [false]
#   COMPOSER_BIN            the composer launcher [composer on PATH, else .venv/bin/composer]
#   DRY_RUN=1               same as --dry-run
#
# example (2 nodes of 8 GPUs; on the second node NODE_RANK=1):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 launch/multi_node_composer.sh yamls/prune.yaml
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
require_yaml_file
require_multi_node_settings
set_runtime_defaults
find_bin COMPOSER_BIN composer

# All four multi-node flags explicitly: composer otherwise falls back to the WORLD_SIZE /
# NODE_RANK environment, which schedulers (e.g. the PyTorchJob operator) set to pod counts.
run_command "$COMPOSER_BIN" \
    --world_size "$((NNODES * NPROC))" --node_rank "$NODE_RANK" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    -n "$NPROC" "$TRAIN_PY" "${TRAIN_ARGS[@]}"
