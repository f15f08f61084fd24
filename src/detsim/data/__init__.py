"""Shower data for training: seeded splits, streaming and in-memory datasets, the Lightning DataModules.

Modules are imported by name (`detsim.data.datamodule.CaloDataModule`); this package module imports none of them,
so using the datasets (`detsim.data.datasets`) does not import Lightning.
  datasets        seeded block splits, the streaming and in-memory shower datasets
  datamodule      CaloDataModule: a shower file as train/val/test DataLoaders
  pid_datamodule  ParticleIdDataModule: labelled shower files, balanced classes
  splits          stratified train/val/test partitions
  settings        what a model measures from its training rows (threshold, energy range)
"""
