"""Pure metrics on arrays: ROC/AUC with DeLong errors, separation power, isotonic probability calibration,
combination of two statistics, metric plots. numpy/scipy/scikit-learn only; imports nothing of detsim above
the ground floor, so every product (calorimeter, GW) can use it."""
