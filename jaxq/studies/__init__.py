"""The studies behind ``jaxq reproduce``: one module per figure, each ``run(out, quick=...)``.

Every study writes into its output folder a ``summary.json`` (setup, numbers and a one-line
verdict on the claim it tests), a ``.npz`` with the raw curves and a PNG readable on its own.
``experiments/<name>.py`` runs one study from the command line.
"""
