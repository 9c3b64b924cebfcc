"""Per-architecture adapters: where the pruned structures live in an HF model.

Llama, Mistral and Qwen2 share the module layout ``model.embed_tokens``,
``model.layers[i].{input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
mlp.{gate,up,down}_proj}``, ``model.norm`` and ``lm_head``; they differ in q/k/v
biases (Qwen2) and config fields. Supporting a new family means adding one adapter.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from composer_plugins.errors import ShearError


@dataclass(frozen=True)
class ArchitectureAdapter:
    """Module paths and layout facts of one LLaMA-family architecture.

    Attributes:
        model_type: the HF ``config.model_type``.
        qkv_bias: q/k/v projections carry biases (Qwen2).
    """
    model_type: str
    qkv_bias: bool = False

    def layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.model.layers

    def embed_tokens(self, model: PreTrainedModel) -> nn.Embedding:
        return model.model.embed_tokens

    def final_norm(self, model: PreTrainedModel) -> nn.Module:
        return model.model.norm

    def lm_head(self, model: PreTrainedModel) -> nn.Linear:
        return model.lm_head

    @staticmethod
    def attention(layer: nn.Module) -> nn.Module:
        return layer.self_attn

    @staticmethod
    def mlp(layer: nn.Module) -> nn.Module:
        return layer.mlp

    @staticmethod
    def norms(layer: nn.Module) -> tuple[str, str]:
        """Attribute names of the two RMSNorms of a decoder layer."""
        return ('input_layernorm', 'post_attention_layernorm')


ADAPTERS: dict[str, ArchitectureAdapter] = {
    'llama': ArchitectureAdapter('llama'),
    'mistral': ArchitectureAdapter('mistral'),
    'qwen2': ArchitectureAdapter('qwen2', qkv_bias=True),
}


def adapter_for(config: PretrainedConfig) -> ArchitectureAdapter:
    """The adapter of ``config.model_type``; a clear error for anything else."""
    model_type = getattr(config, 'model_type', None)
    if model_type not in ADAPTERS:
        raise ShearError(
            f'architecture {model_type!r} is not supported for pruning; supported: {", ".join(sorted(ADAPTERS))}',
        )
    if model_type == 'llama' and (getattr(config, 'attention_bias', False) or getattr(config, 'mlp_bias', False)):
        raise ShearError('llama configs with attention_bias or mlp_bias are not supported for pruning')
    return ADAPTERS[model_type]
