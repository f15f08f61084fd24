"""What every trained network of detsim shares, in either wing: the binary-classifier LightningModule
(`binary`: BCE, score collection, AUC) and files logged through the Trainer's own logger (`artifacts`).

It stands below the models, the evaluation and the GW wing, so all three may use it, and never imports
`detsim.tracking`: a model or callback logs through the logger the app gave its Trainer.
Imported by module name (`detsim.learn.binary`); the package module itself imports nothing.
"""
