"""Import-only stand-in for ``pandas``, for the device check (benchmarks/device/check.sh) only.

``from llmfoundry.command_utils import train`` runs ``llmfoundry.command_utils/__init__``, which
imports every data-prep converter; ``convert_delta_to_json`` does ``import pandas`` and reads
``pd.DataFrame`` in an annotation. Training never calls them. The real wheel is 12 MB; check.sh
puts this folder on ``PYTHONPATH`` only when ``import pandas`` fails. Making a ``DataFrame`` or
reading any other name raises.
"""
SHIM = True


class PandasShimError(ImportError):
    """Raised by every use of this stand-in beyond llm-foundry's import-time needs."""


class DataFrame:
    def __init__(self, *args, **kwargs):
        raise PandasShimError('pandas.DataFrame: pandas is not installed (benchmarks/device/shims stand-in)')


def __getattr__(name: str):
    if name.startswith('__'):
        raise AttributeError(name)
    raise PandasShimError(f'pandas.{name}: pandas is not installed (benchmarks/device/shims stand-in)')
