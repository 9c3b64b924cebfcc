"""Knowledge distillation from a frozen teacher (Minitron-style logit KD).

``loss`` is the functional core (the KD term and how it joins the LM loss), ``config`` the
typed ``distillation:`` block of a run YAML, ``teacher`` loading, checking and placing the
frozen teacher. The Composer class is :class:`composer_plugins.algorithms.distillation.Distillation`.
"""
