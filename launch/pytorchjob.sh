#!/usr/bin/env bash
# Submit a training run to Kubernetes as a Kubeflow PyTorchJob (Training Operator,
# kubeflow.org/v1): renders launch/k8s/pytorchjob.yaml and pipes it to `kubectl apply -f -`.
# Every pod (1 Master + NNODES-1 Workers) runs launch/multi_node_composer.sh with
# NODE_RANK=$RANK, the operator's pod index. Rendering needs only bash and python3.
#
# usage: launch/pytorchjob.sh [--dry-run] YAML [key=value ...]
#   YAML and the overrides are passed unchanged to train.py inside the container, so
#   paths are the container's: relative to WORKDIR, or under SHARED_MOUNT.
#   --dry-run   print the rendered manifest instead of applying it
#   --help      this text
#
# Environment (defaults in brackets):
#   IMAGE          container image holding the checkout and its environment (required)
#   NNODES         pods, one per node [2]
#   NPROC          GPUs (= processes) per pod [8]
#   JOB_NAME       PyTorchJob name, a DNS label [shear-YYYYMMDD-HHMMSS]
#   NAMESPACE      Kubernetes namespace [kubectl's current one]
#   PVC_NAME       ReadWriteMany PersistentVolumeClaim for data and runs [shear-shared]
#   SHARED_MOUNT   where the claim is mounted in every pod [/mnt/shared]
#   WORKDIR        the checkout inside the image [/workspace/shear]
#   MASTER_PORT    rendezvous port of the master pod [23456, the operator's default]
#   SHM_SIZE       size of the in-memory /dev/shm [64Gi]
#   BACKOFF_LIMIT  pod restarts before the job fails [3]
#   FSDP_VERSION   [2]
#   KUBECTL        [kubectl];  PYTHON [python3];  DRY_RUN=1  same as --dry-run
#
# example:
#   IMAGE=registry.example.com/shear:1 NNODES=4 launch/pytorchjob.sh yamls/prune.yaml \
#       variables.data_dir=/mnt/shared/data variables.run_dir=/mnt/shared/runs/prune autoresume=true
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

parse_args "$@"
require_set IMAGE
NNODES=${NNODES:-2}
require_int NNODES 1
NPROC=${NPROC:-8}
require_int NPROC 1
JOB_NAME=${JOB_NAME:-shear-$(date +%Y%m%d-%H%M%S)}
# Pods are named JOB_NAME-worker-N, which must stay a DNS label (63 characters).
[[ $JOB_NAME =~ ^[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?$ ]] ||
    die "JOB_NAME=$JOB_NAME must be lowercase letters, digits and '-', at most 50 characters"
PVC_NAME=${PVC_NAME:-shear-shared}
SHARED_MOUNT=${SHARED_MOUNT:-/mnt/shared}
WORKDIR=${WORKDIR:-/workspace/shear}
MASTER_PORT=${MASTER_PORT:-23456}
require_int MASTER_PORT 1
((MASTER_PORT <= 65535)) || die "MASTER_PORT=$MASTER_PORT must be <= 65535"
SHM_SIZE=${SHM_SIZE:-64Gi}
BACKOFF_LIMIT=${BACKOFF_LIMIT:-3}
require_int BACKOFF_LIMIT 0
FSDP_VERSION=${FSDP_VERSION:-2}
KUBECTL=${KUBECTL:-kubectl}
PYTHON=${PYTHON:-python3}

render() {
    JOB_NAME=$JOB_NAME IMAGE=$IMAGE WORKDIR=$WORKDIR NNODES=$NNODES NPROC=$NPROC \
        FSDP_VERSION=$FSDP_VERSION MASTER_PORT=$MASTER_PORT SHARED_MOUNT=$SHARED_MOUNT \
        PVC_NAME=$PVC_NAME SHM_SIZE=$SHM_SIZE BACKOFF_LIMIT=$BACKOFF_LIMIT \
        WORKER_REPLICAS=$((NNODES - 1)) SCRIPT_NAME=$SCRIPT_NAME \
        "$PYTHON" - "$LAUNCH_DIR/k8s/pytorchjob.yaml" "${TRAIN_ARGS[@]}" <<'PY'
import json, os, re, sys

template_path, *train_args = sys.argv[1:]
text = open(template_path, encoding='utf-8').read()
if int(os.environ['WORKER_REPLICAS']) == 0:  # a single pod: no Worker replica spec at all
    text = re.sub(r'^# BEGIN worker\n.*?^# END worker\n', '', text, flags=re.S | re.M)
integers = {'WORKER_REPLICAS', 'MASTER_PORT', 'BACKOFF_LIMIT'}
# Kubernetes expands $(VAR) and reduces $$ to $ in command and args: double every $ that
# starts either, so that train.py gets the overrides exactly as given.
values = {'TRAIN_ARGS': [re.sub(r'\$(?=[$(])', '$$', arg) for arg in train_args]}

def value(match):
    name = match.group(1)
    if name not in values and name not in os.environ:
        sys.exit(f"{os.environ['SCRIPT_NAME']}: template placeholder {name} has no value")
    if name in values:
        return json.dumps(values[name])
    return str(int(os.environ[name])) if name in integers else json.dumps(os.environ[name])

sys.stdout.write(re.sub(r'\$\{([A-Z_][A-Z0-9_]*)\}', value, text))
PY
}

kubectl_command=("$KUBECTL" apply -f -)
[[ -z ${NAMESPACE:-} ]] || kubectl_command+=(--namespace "$NAMESPACE")

manifest=$(render)
if ((DRY_RUN)); then
    printf '# %s\n' "$(quote_line "${kubectl_command[@]}")"
    printf '%s\n' "$manifest"
    exit 0
fi
printf '%s\n' "$manifest" | "${kubectl_command[@]}"
