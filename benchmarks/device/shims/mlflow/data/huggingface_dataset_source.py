"""Empty stand-in for ``mlflow.data.huggingface_dataset_source``; any attribute raises."""
from mlflow import __getattr__  # noqa: F401
