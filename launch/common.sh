# Shared by the launch scripts (sourced, not run): argument parsing, checks, runtime
# defaults and the --dry-run printer. Needs bash >= 4.4.

LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$LAUNCH_DIR")
TRAIN_PY=$REPO_ROOT/train.py
SCRIPT_NAME=$(basename "$0")  # for messages; slurm.sbatch renames its spool copy back

# Errors are one line on stderr that names the script and the variable or argument.
die() {
    printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 2
}

# --help prints the script's header comment (after the shebang and any #SBATCH lines).
usage() {
    awk 'NR == 1 && /^#!/ {next} /^#SBATCH/ {next} /^#/ {sub(/^# ?/, ""); print; next} {exit}' "$0"
}

# parse_args "$@": sets DRY_RUN (also from the environment) and TRAIN_ARGS=(YAML key=value ...).
# --dry-run / --help may appear anywhere before a `--`; everything else is passed through
# to train.py unchanged (overrides are key=value, so none starts with '-').
parse_args() {
    case ${DRY_RUN:-0} in
        1 | true | yes) DRY_RUN=1 ;;
        0 | false | no | '') DRY_RUN=0 ;;
        *) die "DRY_RUN=$DRY_RUN must be 1 or 0" ;;
    esac
    TRAIN_ARGS=()
    local arg options_done=0
    for arg in "$@"; do
        if ((!options_done)); then
            case $arg in
                -h | --help) usage; exit 0 ;;
                --dry-run) DRY_RUN=1; continue ;;
                --) options_done=1; continue ;;
                -*) die "unknown option $arg (see --help)" ;;
            esac
        fi
        TRAIN_ARGS+=("$arg")
    done
    ((${#TRAIN_ARGS[@]})) || die "missing YAML: usage: $SCRIPT_NAME [--dry-run] YAML [key=value ...]"
}

require_yaml_file() {
    [[ -f ${TRAIN_ARGS[0]} ]] || die "YAML not found: ${TRAIN_ARGS[0]}"
}

require_set() {  # NAME
    [[ -n ${!1-} ]] || die "$1 is not set (see --help)"
}

require_int() {  # NAME MIN: the variable holds an integer >= MIN
    require_set "$1"
    local value=${!1}
    [[ $value =~ ^[0-9]+$ ]] || die "$1=$value is not a non-negative integer"
    ((10#$value >= $2)) || die "$1=$value must be >= $2"
    printf -v "$1" '%d' "$((10#$value))"  # normalise 08 -> 8 for the arithmetic below
}

# The settings both multi-node scripts need, checked before anything starts.
require_multi_node_settings() {
    require_int NNODES 1
    require_int NODE_RANK 0
    ((NODE_RANK < NNODES)) || die "NODE_RANK=$NODE_RANK must be < NNODES=$NNODES"
    require_set MASTER_ADDR
    MASTER_PORT=${MASTER_PORT:-29500}
    require_int MASTER_PORT 1
    ((MASTER_PORT <= 65535)) || die "MASTER_PORT=$MASTER_PORT must be <= 65535"
    NPROC=${NPROC:-$(gpu_count)}
    require_int NPROC 1
}

# Processes per node: one per visible GPU (CUDA_VISIBLE_DEVICES, when set by SLURM or the
# user, wins over what nvidia-smi lists), else 1 (CPU).
gpu_count() {
    local count=0
    if [[ -n ${CUDA_VISIBLE_DEVICES+set} ]]; then  # set but empty (or NoDevFiles): no GPU
        local -a devices=()
        [[ $CUDA_VISIBLE_DEVICES == NoDevFiles ]] || IFS=, read -ra devices <<<"$CUDA_VISIBLE_DEVICES"
        count=${#devices[@]}
    elif command -v nvidia-smi >/dev/null 2>&1; then
        count=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    fi
    echo $((count > 0 ? count : 1))
}

# Runtime defaults, each only when unset. RUN_ENV names the variables the --dry-run line
# shows (as an `env NAME=value ...` prefix), so that the printed line is the whole command.
set_runtime_defaults() {  # NPROC must be set
    export FSDP_VERSION=${FSDP_VERSION:-2}  # composer's FSDP2; FSDP1 needs CUDA and is legacy
    # The node's cores shared among its processes; torchrun would otherwise force 1 and
    # `composer -n` would let every process use all cores (oversubscribed on CPU).
    local cores
    cores=$(nproc 2>/dev/null || echo 1)
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((cores / NPROC > 0 ? cores / NPROC : 1))}
    # HF tokenizers warn and may deadlock when dataloader workers fork after tokenizing.
    export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
    RUN_ENV=(FSDP_VERSION OMP_NUM_THREADS TOKENIZERS_PARALLELISM)
}

# find_bin VAR NAME: $VAR if set, else NAME on PATH, else the repo's .venv/bin/NAME.
find_bin() {
    local var=$1 name=$2
    if [[ -n ${!var:-} ]]; then
        return
    elif command -v "$name" >/dev/null 2>&1; then
        printf -v "$var" '%s' "$name"
    elif [[ -x $REPO_ROOT/.venv/bin/$name ]]; then
        printf -v "$var" '%s' "$REPO_ROOT/.venv/bin/$name"
    else
        printf -v "$var" '%s' "$name"  # fails with "command not found" when run
    fi
}

quote_line() {  # print "$@" as one shell-quoted line
    local line
    line=$(printf '%q ' "$@")
    printf '%s\n' "${line% }"
}

# run_command CMD...: exec it, or under --dry-run print it (with the RUN_ENV prefix) and return.
run_command() {
    if ((DRY_RUN)); then
        local name words=(env)
        for name in "${RUN_ENV[@]}"; do words+=("$name=${!name}"); done
        quote_line "${words[@]}" "$@"
        return 0
    fi
    exec "$@"
}
