"""GW research studies (device runs, ensembles, rescoring, bank searches, combinations).

Each module has a `main()` run as `python -m detsim.gw.study.<name>`; pipelines/gw_study/README.md says what
each study measured and where its dated report is. `device_run` is the library the others build on: it needs
only numpy, torch and h5py, so it runs on a bare GPU image.
"""
