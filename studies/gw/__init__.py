"""The G2Net accuracy study: can the 1D CNN come within 0.02 AUC of the matched filter with true templates?

`injections` draws the samples and computes with pycbc what only pycbc can (waveforms, antenna patterns, PSDs),
written as one bundle; `int8_waveforms` shrinks a bundle for transfer; on a machine without pycbc,
`cnn_vs_matched_filter` rebuilds the samples (`samples`, `redraw`), trains the CNN through detsim's
`GWClassifier` and Lightning (`cnn_training`) and judges it against the matched filters (`templates`,
`auc_gap`); `ensemble`, `rescore`, `bank_search` and `combine` take finished runs further. Each study module runs
as `python -m studies.gw.<name> --help` from the repository root; studies/README.md says what each measured.
"""
