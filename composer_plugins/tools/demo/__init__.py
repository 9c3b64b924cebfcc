"""The embedded default run (``shear demo``): its stages, its pipeline, and the corpora it builds from the installation.
"""
