"""Empty stand-in for ``mlflow.data.http_dataset_source``; any attribute raises."""
from mlflow import __getattr__  # noqa: F401
