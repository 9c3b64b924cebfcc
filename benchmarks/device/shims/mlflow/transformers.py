"""Names llm-foundry's ``hf_checkpointer`` imports from ``mlflow.transformers``; calling them raises."""
from mlflow import MlflowShimError


def _fetch_model_card(*args, **kwargs):
    raise MlflowShimError('mlflow.transformers._fetch_model_card: mlflow is not installed')


def _write_license_information(*args, **kwargs):
    raise MlflowShimError('mlflow.transformers._write_license_information: mlflow is not installed')
