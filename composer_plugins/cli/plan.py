"""`shear plan`: memory per GPU of a run YAML before launching it.

The formula is in :mod:`composer_plugins.tools.planning.memory`.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``shear plan`` on ``subparsers`` (protocol: :mod:`composer_plugins.cli.main`); returns its parser."""
    parser = subparsers.add_parser(
        'plan',
        help='estimate the memory per GPU of a run YAML and say whether it fits',
        description=(
            'Validate a run YAML plus key=value overrides as `composer train.py` does (data folders and '
            'model weights need not exist here; the model shape comes from its config.json, a tiny-* name, '
            'or --source-shape), then estimate the memory per GPU of one training step: parameters, '
            'gradients, optimizer state, masks, FSDP working copy, activations, logits and runtime '
            'overhead. With --gpu-mem it says whether the run fits and, if not, which knob to turn first.'),
    )
    parser.add_argument('yaml', metavar='YAML', help='run config, as for shear train (a path or a bundled name)')
    parser.add_argument('overrides', nargs='*', metavar='key=value', help='overrides, right after YAML')
    parser.add_argument('--gpus', type=int, default=1, help='GPUs (data-parallel processes); default 1')
    parser.add_argument('--gpu-mem', type=float, default=None, metavar='GiB',
                        help='memory per GPU (per process with --device cpu) in GiB; enables the fit check')
    parser.add_argument('--device', choices=('gpu', 'cpu'), default='gpu',
                        help='gpu (default) or cpu: one fp32 process without FSDP, CPU process baseline')
    parser.add_argument('--source-shape', default=None, metavar='NAME|PATH',
                        help='shape of model.source when its config.json is not on this machine: '
                             'llama2-7b, llama3.1-8b, smollm2-135m, or a config.json / model directory')
    parser.add_argument('--json', action='store_true', help='print the plan as JSON')
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Print the plan; returns 0 (errors surface as ``ShearError``, exit code 2)."""
    from composer_plugins.errors import ConfigError
    from composer_plugins.tools.planning.advice import knob_options, recommend
    from composer_plugins.tools.planning.memory import GIB, estimate_memory
    from composer_plugins.tools.planning.render import MemoryPlan, plan_to_dict, render_text
    from composer_plugins.tools.planning.run_inputs import plan_run

    if args.gpu_mem is not None and not (math.isfinite(args.gpu_mem) and args.gpu_mem > 0):
        raise ConfigError(f'--gpu-mem: got {args.gpu_mem}; expected a positive number of GiB')
    from composer_plugins.bundled import resolve_run_yaml

    planned = plan_run(str(resolve_run_yaml(args.yaml)), args.overrides, gpus=args.gpus, device=args.device,
                       source_shape=args.source_shape)
    breakdown = estimate_memory(planned.inputs)
    budget = None if args.gpu_mem is None else int(args.gpu_mem * GIB)
    options: tuple = ()
    recommendation = None
    if budget is not None and breakdown.total > budget:
        options = tuple(knob_options(planned.inputs, budget, planned.seq_len_key))
        recommendation = recommend(planned.inputs, budget, list(options))
    plan = MemoryPlan(args.yaml, planned, breakdown, budget, options, recommendation)
    if args.json:
        print(json.dumps(plan_to_dict(plan), indent=2))
    else:
        print(render_text(plan))
    return 0
