"""Import-only stand-in for ``mlflow``, for the device check (benchmarks/device/check.sh) only.

llm-foundry 0.22.0 imports ``mlflow`` (and ``mlflow.transformers``, ``mlflow.data``) at module
load, but a run without an ``mlflow`` logger never calls it. The real ``mlflow-skinny`` would pull
pandas, cryptography, databricks-sdk, opentelemetry and protobuf: about 30 MB of wheels, more than
the device's working tree can carry. check.sh puts this folder on ``PYTHONPATH`` only when
``import mlflow`` fails; anything beyond the few names llm-foundry reads at import raises.
"""
SHIM = True


class MlflowShimError(ImportError):
    """Raised by every use of this stand-in beyond llm-foundry's import-time needs."""


def active_run():
    """No MLflow run is ever active here (llm-foundry's ``log_dataset_uri`` checks this first)."""
    return None


def __getattr__(name: str):
    if name.startswith('__'):
        raise AttributeError(name)
    raise MlflowShimError(f'mlflow.{name}: mlflow is not installed (benchmarks/device/shims stand-in)')
