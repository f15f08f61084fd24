"""The Trainer a LightningModule is attached to, or None, through Lightning's public `trainer` property.

Why: `module.trainer` raises outside a fit (a module built to generate, or called in a test), and reading
Lightning's private `_trainer` to avoid that breaks with any Lightning release that renames it.
"""

from __future__ import annotations

import lightning.pytorch as L


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """`module.trainer`, or None when the module is not attached to a Trainer."""
    try:
        return module.trainer
    except RuntimeError:
        return None
