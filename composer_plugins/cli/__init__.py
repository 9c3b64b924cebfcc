"""The `shear` console command: one module per sub-command, each exposing `add_parser`."""
