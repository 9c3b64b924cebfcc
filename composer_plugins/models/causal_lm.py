"""A Hugging Face causal LM as a Composer model (registered as ``shear_causal_lm``)."""
from __future__ import annotations

from typing import Any, Optional

from composer.metrics.nlp import LanguageCrossEntropy, LanguagePerplexity
from composer.models import HuggingFaceModel
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from composer_plugins.models.loading import load_causal_lm


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The list of decoder blocks of a LLaMA-family model (``model.model.layers``)."""
    return model.get_decoder().layers


class ShearCausalLM(HuggingFaceModel):
    """Wraps an HF LLaMA-family causal LM; loss is HF's next-token cross entropy.

    Each decoder layer is its own FSDP unit (``fsdp_wrap_fn``), which Composer's FSDP2
    wrapping policy reads.
    """

    def __init__(
        self,
        source: str,
        tokenizer: Optional[PreTrainedTokenizerBase] = None,
        pretrained: bool = True,
        config_overrides: Optional[dict[str, Any]] = None,
        attn_implementation: str = 'sdpa',
    ) -> None:
        model = load_causal_lm(source, pretrained, config_overrides, attn_implementation)
        layer_types = tuple({type(layer) for layer in decoder_layers(model)})
        model.fsdp_wrap_fn = lambda module: isinstance(module, layer_types)
        model.activation_checkpointing_fn = lambda module: isinstance(module, layer_types)
        super().__init__(
            model=model,
            tokenizer=tokenizer,
            use_logits=True,
            metrics=[LanguageCrossEntropy()],
            eval_metrics=[LanguageCrossEntropy(), LanguagePerplexity()],
            shift_labels=True,
            allow_embedding_resizing=False,
        )
        self.source = source
