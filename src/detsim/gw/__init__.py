"""The gravitational-wave wing (G2Net): strain files, BBH priors and waveforms, detector noise, synthesis,
whitening, the datamodule, the CNNs, the matched-filter baseline and its template bank, reports.

Modules are named after the physics, as pycbc names them, and imported by those names
(`detsim.gw.synth.synthesise`, `detsim.gw.cnn.GWClassifier`); this package module imports none of them, so
importing one module loads only what it needs (pycbc, an optional extra, is loaded through `detsim.extras` by the
modules that draw waveforms, antenna patterns and PSDs, when they do). Nothing here imports the calorimeter side, and the calorimeter side never
imports this wing (checked by the import contracts in `pyproject.toml`).
"""
