"""Neural networks (LightningModules and nn.Modules): the conditional VAE and the shower CNN classifiers."""
