"""Import-only stand-in for ``pyarrow``, for the device check (benchmarks/device/check.sh) only.

llm-foundry's data-prep converter ``convert_delta_to_json`` does ``import pyarrow as pa`` at load
(``from llmfoundry.command_utils import train`` imports it) and uses it only inside functions that
training never calls. The real wheel is over 40 MB; check.sh puts this folder on ``PYTHONPATH``
only when ``import pyarrow`` fails. Reading any name raises.
"""
SHIM = True


class PyarrowShimError(ImportError):
    """Raised by every use of this stand-in."""


def __getattr__(name: str):
    if name.startswith('__'):
        raise AttributeError(name)
    raise PyarrowShimError(f'pyarrow.{name}: pyarrow is not installed (benchmarks/device/shims stand-in)')
