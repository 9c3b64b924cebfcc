"""Empty stand-in for ``mlflow.data.meta_dataset``; any attribute raises."""
from mlflow import __getattr__  # noqa: F401
