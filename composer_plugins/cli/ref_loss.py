"""`shear ref-loss`: reference losses per domain for ``callbacks.dynamic_loading``.

* ``shear ref-loss measure --model M --data D``: a model's mean eval loss per domain;
* ``shear ref-loss fit sizes_losses.csv --target-params 1.3B``: per domain, the scaling
  law ``L(N) = E + A / N^alpha`` (Sheared-LLaMA §2.2) fitted over a model family and
  evaluated at the target size.

Both print a table and write (``--out``) or print a YAML ``ref_losses:`` mapping.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``ref-loss`` sub-command and its ``measure`` / ``fit`` actions.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The sub-command's parser.
    """
    parser = subparsers.add_parser(
        'ref-loss',
        help='reference losses per domain for callbacks.dynamic_loading (measure or scaling-law fit)',
        description=(
            'Produce the ref_losses mapping of callbacks.dynamic_loading: measure a model\'s eval loss '
            'per domain, or fit L(N) = E + A / N^alpha per domain over a model family and predict it at '
            'the target size. The YAML written parses to exactly {ref_losses: {domain: loss}}; details are '
            'comments.'),
    )
    actions = parser.add_subparsers(dest='action', required=True, metavar='ACTION')

    measure = actions.add_parser(
        'measure', help='mean next-token cross entropy of a model on each domain',
        description=(
            'For each domain of DATA (DATA/<domain>/<split>/ MDS shards, column "tokens"), the mean '
            'next-token cross entropy (nats per predicted token, fp32, eval mode) of the Hugging Face model '
            'over the first --max-rows rows. Domains default to DATA/manifest.json\'s, else every '
            'sub-folder with <split>/index.json.'),
    )
    measure.add_argument('--model', required=True, help='local Hugging Face model directory (or a tiny-* config)')
    measure.add_argument('--data', required=True, help='folder with <domain>/<split>/ MDS datasets (shear prep OUT)')
    measure.add_argument('--split', default='eval', help='split folder to read (default: eval)')
    measure.add_argument('--domains', default=None, help='comma-separated domains (default: all)')
    measure.add_argument('--max-rows', type=int, default=64, help='rows per domain at most (default: 64)')
    measure.add_argument('--batch-size', type=int, default=4, help='rows per forward pass (default: 4)')
    measure.add_argument('--out', default=None, help='YAML file to write (default: print the YAML)')
    measure.set_defaults(func=run_measure)

    fit = actions.add_parser(
        'fit', help='fit L(N) = E + A / N^alpha per domain and predict the loss at --target-params',
        description=(
            'Read a CSV with header params,<domain1>,<domain2>,... and one row per model size (params as '
            'an integer or with K/M/B/T suffix, e.g. 1.3B; at least 3 sizes), fit L(N) = E + A / N^alpha '
            'per domain (N in billions, E >= 0, A > 0, alpha > 0) and predict each loss at --target-params.'),
    )
    fit.add_argument('csv', help='CSV of losses per model size and domain')
    fit.add_argument('--target-params', required=True, help='parameter count to predict at (e.g. 1.3B, 2700M)')
    fit.add_argument('--out', default=None, help='YAML file to write (default: print the YAML)')
    fit.set_defaults(func=run_fit)
    return parser


def _emit(losses: dict[str, float], comments: list[str], out: str | None) -> None:
    from composer_plugins.data.reference_losses import ref_losses_yaml, write_ref_losses_yaml

    if out is None:
        print(ref_losses_yaml(losses, comments), end='')
    else:
        print(f'Wrote {write_ref_losses_yaml(out, losses, comments)}')


def run_measure(args: argparse.Namespace) -> int:
    """Measure the losses; returns the exit code (errors surface as ``ShearError``)."""
    from composer_plugins.data.reference_losses import measure_reference_losses

    domains = None if args.domains is None else [d.strip() for d in args.domains.split(',') if d.strip()]
    results = measure_reference_losses(
        args.model, args.data, split=args.split, domains=domains, max_rows=args.max_rows,
        batch_size=args.batch_size,
    )
    width = max(len('domain'), *(len(d) for d in results))
    print(f'{"domain":<{width}}  {"rows":>6}  {"tokens":>9}  {"loss":>8}')
    for domain, res in results.items():
        print(f'{domain:<{width}}  {res.rows:>6}  {res.tokens:>9}  {res.loss:>8.4f}')
    comments = [
        'Reference losses for callbacks.dynamic_loading (shear ref-loss measure)',
        f'measured_with: model={args.model} data={args.data} split={args.split} max_rows={args.max_rows}',
        'rows/tokens per domain: ' + ', '.join(f'{d}={r.rows}/{r.tokens}' for d, r in results.items()),
    ]
    _emit({d: r.loss for d, r in results.items()}, comments, args.out)
    return 0


def run_fit(args: argparse.Namespace) -> int:
    """Fit the scaling laws; returns the exit code (errors surface as ``ShearError``)."""
    from composer_plugins.data.reference_losses import fit_reference_losses, parse_param_count

    target = parse_param_count(args.target_params, f'--target-params {args.target_params!r}')
    fits = fit_reference_losses(args.csv)
    predictions = {domain: float(fit.predict(target)) for domain, fit in fits.items()}
    width = max(len('domain'), *(len(d) for d in fits))
    print(f'Fitted L(N) = E + A / (N/1e9)^alpha; prediction at N = {target:.4g}')
    print(f'{"domain":<{width}}  {"E":>8}  {"A":>8}  {"alpha":>7}  {"rmse":>8}  {"L(N)":>8}')
    for domain, fit in fits.items():
        print(f'{domain:<{width}}  {fit.E:>8.4f}  {fit.A:>8.4f}  {fit.alpha:>7.4f}  {fit.rmse:>8.1e}  '
              f'{predictions[domain]:>8.4f}')
    comments = [
        'Reference losses for callbacks.dynamic_loading (shear ref-loss fit)',
        f'fitted_with: csv={args.csv} target_params={target:.6g} law=E + A / (N/1e9)^alpha',
        *(f'{d}: E={f.E:.6g} A={f.A:.6g} alpha={f.alpha:.6g} rmse={f.rmse:.2g}' for d, f in fits.items()),
    ]
    _emit(predictions, comments, args.out)
    return 0
