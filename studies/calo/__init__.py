"""Calorimeter studies: VAE fidelity and stability, the parametric simulator against Geant4, the load check.

Each module is a script run from the repository root, `python -m studies.calo.<name> --help`; studies/README.md
says what each measured and where its dated report is.
"""
