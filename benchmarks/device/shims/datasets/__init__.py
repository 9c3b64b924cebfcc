"""Import-only stand-in for Hugging Face ``datasets``, for the device check (benchmarks/device/check.sh) only.

llm-foundry 0.22.0 imports ``datasets`` at module load (for type hints and its fine-tuning and
ICL-eval loaders), but a pre-training run on MDS shards never calls it. The real package needs
pyarrow and pandas: about 55 MB of wheels, more than the device's working tree can carry.
check.sh puts this folder on ``PYTHONPATH`` only when ``import datasets`` fails. The classes exist
for annotations and ``isinstance`` (which is always False); making one, or calling
``load_dataset``, raises.
"""
SHIM = True


class DatasetsShimError(ImportError):
    """Raised by every use of this stand-in beyond llm-foundry's import-time needs."""


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise DatasetsShimError(f'datasets.{type(self).__name__}: datasets is not installed '
                                '(benchmarks/device/shims stand-in)')


class Dataset(_Unavailable):
    pass


class DatasetDict(_Unavailable):
    pass


class IterableDataset(_Unavailable):
    pass


class IterableDatasetDict(_Unavailable):
    pass


def load_dataset(*args, **kwargs):
    raise DatasetsShimError('datasets.load_dataset: datasets is not installed (benchmarks/device/shims stand-in)')


def __getattr__(name: str):
    if name.startswith('__'):
        raise AttributeError(name)
    raise DatasetsShimError(f'datasets.{name}: datasets is not installed (benchmarks/device/shims stand-in)')
