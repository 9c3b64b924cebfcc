"""``shear wandb-dashboard``: a saved W&B workspace for a project's pruning runs.

* :mod:`.spec`: the sections and panels as typed data (no wandb import);
* :mod:`.workspace`: that spec as a ``wandb_workspaces`` workspace, saved to W&B or written to a file;
* :mod:`.layout_png`: a picture of the layout (the README's), drawn with matplotlib.
"""
