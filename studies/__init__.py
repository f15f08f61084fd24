"""Research on top of detsim: each study imports detsim and is never imported by it (studies/README.md).

The rule is an import contract in pyproject.toml ("The product never imports the studies"): a study may change
every week, chase a number with a loop of its own or need a tool the product does not; the product must not
bend to it (no hooks so that a study imports on a bare machine, no module shaped by one experiment).
"""
