"""`shear report`: plots and a markdown summary of one or more training run folders.

* :mod:`composer_plugins.tools.report.metrics` loads a run folder (metrics, masks, exported config);
* :mod:`composer_plugins.tools.report.plots` draws one PNG per figure;
* :mod:`composer_plugins.tools.report.markdown` assembles ``report.md``.
"""
from composer_plugins.tools.report.markdown import write_report

__all__ = ['write_report']
