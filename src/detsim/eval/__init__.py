"""Evaluation of generated showers: CaloChallenge features, separation power, classifier two-sample
tests, plots and reports. `detsim.eval.suite.evaluate_showers` runs all of it on in-memory samples."""
