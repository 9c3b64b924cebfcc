"""Planning a run before it starts: memory per device (``shear plan``).

* :mod:`.memory` -- the memory formula: inputs, per-term breakdown, estimate;
* :mod:`.advice` -- which knob to turn first when a run does not fit;
* :mod:`composer_plugins.models.source_shape` (in the library) -- a model's shape from a config only;
* :mod:`.run_inputs` -- a run YAML (plus overrides) turned into memory inputs, without the data;
* :mod:`.render` -- a plan as a text table or a JSON-ready dict;
* :mod:`.measure` -- peak RSS of a real training subprocess, to check the formula against.
"""
