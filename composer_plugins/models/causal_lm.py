"""A Hugging Face causal LM as a Composer model (registered as ``shear_causal_lm``).

Without ``pruning`` it is a plain HF model trained with next-token cross entropy.
With ``pruning`` (paper §2.1) it also holds a :class:`Pruner`; each forward samples
masks (deterministic in eval mode), applies them through hooks, and the training loss
is ``lm + lagrangian`` (paper eq. 3), the Lagrangian term computed inside ``forward``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from composer.metrics.nlp import LanguageCrossEntropy, LanguagePerplexity
from composer.models import HuggingFaceModel
from composer.utils import dist
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from composer_plugins.config.typed import from_dict
from composer_plugins.errors import ShearError
from composer_plugins.models.adapters import adapter_for
from composer_plugins.models.loading import load_causal_lm
from composer_plugins.models.mask_hooks import MaskApplier
from composer_plugins.models.pruner import Pruner, PrunerOutput
from composer_plugins.pruning.config import PruningConfig, require_armed
from composer_plugins.pruning.masks import default_mask_types
from composer_plugins.pruning.shapes import ModelShape, count_non_embedding_params, validate_target


def decoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The list of decoder blocks of a LLaMA-family model (``model.model.layers``)."""
    return model.get_decoder().layers


class ShearCausalLM(HuggingFaceModel):
    """Wraps an HF LLaMA-family causal LM, optionally with L0 pruning masks.

    Each decoder layer is its own FSDP unit (``fsdp_wrap_fn``), which Composer's FSDP2
    wrapping policy reads; the pruner is another unit.

    Attributes:
        pruner: the masks and multipliers, or None for plain training.
        pruning_step: the batch of the gate noise; set from ``state.timestamp`` by the
            ``lagrangian`` callback (:class:`~composer_plugins.callbacks.lagrangian.LagrangianAscent`).
        pruning_microbatch: the microbatch of that batch (counted by the same callback); the
            gate noise is a function of (seed, batch, rank, microbatch).
        pruning_targets: the target sparsity of each mask at that batch (on the callback's
            ramp); None means the final targets.
        last_pruner_output: the latest forward's :class:`PrunerOutput` (for logging).
        armed_by: the mask callbacks that have taken their parameters at ``Event.INIT``;
            a pruning model trains only with both (:func:`require_armed`).
    """

    def __init__(
        self,
        source: str,
        tokenizer: Optional[PreTrainedTokenizerBase] = None,
        pretrained: bool = True,
        config_overrides: Optional[dict[str, Any]] = None,
        attn_implementation: str = 'sdpa',
        pruning: Optional[Mapping[str, Any]] = None,
        init_device: str = 'cpu',
        hf_model: Optional[PreTrainedModel] = None,
    ) -> None:
        if init_device != 'cpu':  # llm-foundry hands model.init_device on; the config layer allows only cpu
            raise ShearError(f"model.init_device: got {init_device!r}; only 'cpu' is supported")
        # hf_model: a model built by the caller, in place of loading ``source`` (Python callers only, e.g. the
        # scale rehearsal's bfloat16 source; the YAML has no such key).
        model = hf_model if hf_model is not None else load_causal_lm(source, pretrained, config_overrides,
                                                                     attn_implementation)
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
        self.pruner: Optional[Pruner] = None
        self.mask_applier: Optional[MaskApplier] = None
        self.pruning_step = 0
        self.pruning_microbatch = 0
        self.armed_by: set[str] = set()
        self.pruning_targets: Optional[dict[str, float]] = None
        self.last_pruner_output: Optional[PrunerOutput] = None
        self._lagrangian: Optional[torch.Tensor] = None
        if pruning is not None:
            self._attach_pruner(from_dict(PruningConfig, dict(pruning), 'model.pruning'))

    def _attach_pruner(self, cfg: PruningConfig) -> None:
        adapter = adapter_for(self.model.config)
        source_shape = ModelShape.from_hf_config(self.model.config)
        target_shape = cfg.target.to_shape(source_shape)
        validate_target(source_shape, target_shape)
        mask_types = cfg.mask_types if cfg.mask_types is not None else default_mask_types(source_shape)
        self.pruner = Pruner(source_shape, target_shape, mask_types, source_name=self.source,
                             sample_seed=cfg.sample_seed, eval_at='target' if cfg.eval_target_masks else 'expected')
        self.mask_applier = MaskApplier(self.model, adapter, source_shape)

    def forward(self, batch: Mapping[str, Any]) -> Any:
        if self.pruner is not None:
            if self.training:
                require_armed(self.armed_by)
            out = self.pruner(self.pruning_step, self.pruning_targets, dist.get_global_rank(), self.pruning_microbatch)
            self.mask_applier.set_masks(out.masks)
            self.last_pruner_output = out
            self._lagrangian = out.lagrangian if self.training else None
        inputs = {key: value for key, value in batch.items() if key in self.model_forward_args}
        return self.model(**inputs, use_cache=False)  # no K/V cache: nothing here generates

    def loss(self, outputs: Any, batch: Mapping[str, Any]) -> Any:
        lm_loss = super().loss(outputs, batch)
        if self._lagrangian is None:
            return lm_loss
        lagrangian, self._lagrangian = self._lagrangian, None
        return {'total': lm_loss + lagrangian, 'lm': lm_loss, 'lagrangian': lagrangian}

    def flops_per_batch(self, batch: Mapping[str, Any]) -> int:
        """Model FLOPs of one training step (forward + backward) on ``batch``; Composer's ``SpeedMonitor``
        reads it for ``throughput/flops_per_sec`` and MFU.

        Per token, PaLM's count (Chowdhery et al. 2022, arXiv 2204.02311, appendix B)::

            6 N + 12 L (n_heads head_dim) S

        ``N``: the parameters of every matmul: the non-embedding parameters plus the ``lm_head``
        matrix ``V H`` (computed also when tied; the input embedding is a lookup). ``12 L d S``:
        ``Q K^T`` and ``A V`` over ``S`` keys per query, forward + backward, not halved for the
        causal mask. Recomputation (activation checkpointing) is not counted: MFU, not HFU.
        With ``pruning`` the dense source's FLOPs: the masks scale activations, nothing is skipped
        (the pruner's own parameters are negligible and not counted). Padding counts as tokens.
        """
        shape = ModelShape.from_hf_config(self.model.config)
        batch_size, seq_len = batch['input_ids'].shape[:2]
        matmul_params = count_non_embedding_params(shape) + shape.vocab_size * shape.hidden_size
        attention = 12 * shape.num_layers * shape.num_attention_heads * shape.head_dim * seq_len
        return batch_size * seq_len * (6 * matmul_params + attention)
