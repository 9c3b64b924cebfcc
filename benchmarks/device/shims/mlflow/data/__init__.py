"""``mlflow.data`` and the dataset-source modules llm-foundry's ``config_utils`` imports (empty)."""
