"""``datasets.exceptions`` names llm-foundry reads at import."""


class DatasetGenerationError(Exception):
    pass
