"""The console of a run: third-party lines that repeat or mislead, filtered once, here.

:func:`quiet_third_party` is called by every ``shear`` command, ``train.py`` and the recipe's
llm-foundry config transform before anything is built. (``shear eval``'s lm-eval tasks write out
each metric's aggregation, which lm-eval otherwise warns about six times a task.) What it drops or corrects, and why:

* llm-foundry's ``changing autoresume default to True`` (``llmfoundry.command_utils.train``): printed
  whenever ``run_name`` and ``save_folder`` are set, although the Trainer gets the YAML's
  ``autoresume`` unchanged; replaced by one line that says what the run does.
* mosaicml-streaming's ``Because `<key>` was not specified, it will default to ...`` (``streaming.base.dataset``):
  one INFO line per dataset and key (six in a run with an eval loader), about defaults.
* torch's ``_register_pytree_node is deprecated`` (a ``FutureWarning`` raised inside transformers' import).
* Composer's ``The warmup duration is 0`` (a ``UserWarning`` of every scheduler without warm-up).
* Composer's ``To copy construct from a tensor`` (a ``UserWarning`` from its own batch-size bookkeeping).

Nothing else is filtered: every metric stays in ``metrics.jsonl`` and on W&B.
"""
from __future__ import annotations

import logging
import warnings

log = logging.getLogger(__name__)

STREAMING_DEFAULTS = 'Because `'
AUTORESUME_DEFAULT = 'changing autoresume default to True'


class _DropMessages(logging.Filter):
    """Drops records whose message starts with (or contains) one of ``fragments``."""

    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def quiet_third_party(autoresume: bool | None = None) -> None:
    """Installs the filters above (idempotent). With ``autoresume`` known, says once what the run does."""
    _add_filter('streaming.base.dataset', STREAMING_DEFAULTS)
    _add_filter('llmfoundry.command_utils.train', AUTORESUME_DEFAULT)
    warnings.filterwarnings('ignore', message=r'`torch\.utils\._pytree\._register_pytree_node` is deprecated')
    warnings.filterwarnings('ignore', message=r'The warmup duration is 0')
    warnings.filterwarnings('ignore', message=r'To copy construct from a tensor')
    if autoresume is not None:
        log.info('autoresume: %s', 'on (resumes from save_folder\'s latest checkpoint)' if autoresume else
                 'off, as the YAML says')


def _add_filter(logger_name: str, fragment: str) -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _DropMessages) and fragment in f.fragments for f in logger.filters):
        logger.addFilter(_DropMessages(fragment))
