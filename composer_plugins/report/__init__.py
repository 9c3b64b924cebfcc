"""`shear report`: plots and a markdown summary of one or more training run folders.

* :mod:`composer_plugins.report.metrics` loads a run folder (metrics, masks, exported config);
* :mod:`composer_plugins.report.plots` draws one PNG per figure;
* :mod:`composer_plugins.report.markdown` assembles ``report.md``.
"""
from composer_plugins.report.markdown import write_report

__all__ = ['write_report']
