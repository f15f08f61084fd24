"""The Geant4 simulation backend (optional extra `detsim[geant4]`, geant4-pybind).

Modules, one job each:
  datasets   where the 12 Geant4 data sets are (G4*DATA variables or `geant4.data_dir`), which are missing
  brems, photoabsorption, standin   the documented stand-in EM data set for hosts without real data
  calorimeter   the sampling-calorimeter description read from conf/detector
  bindings   the one place the optional extra is imported: `require` (is it installed?) in the CLI's process,
             `load` (geant4_pybind and `build`, after the data-set variables are set) in a worker
  build      the Geant4 geometry, scorers and physics list (imports geant4_pybind; imported by `bindings.load` only)
  worker     one Geant4 per process: simulate shower blocks, return voxel arrays
  runner     the `simulator=geant4` entry: workers, block appends, progress, calibration
Nothing here imports geant4_pybind at module import time except `build`, which only `bindings.load` imports, in
child processes (the bindings are one Geant4 per process and may crash at interpreter teardown).
"""
