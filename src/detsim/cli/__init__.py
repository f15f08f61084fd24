"""Thin Hydra apps; each composes a primary config from `conf/` and calls library code."""
