"""`--help` for a detsim app: the config groups this app composes, each with its choice and its options.

Hydra's own help lists every group of the whole `conf/` tree (the GW wing's beside the calorimeter's), which
tells a user of `detsim-convert` about optimisers it never reads. Here the groups come from the app's own
composed defaults, so the list is what the app uses; the usage lines come from the primary config's header.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from detsim.paths import config_dir

HIDDEN_PREFIXES = ("hydra/", "hydra")


def group_options(conf: Path, group: str) -> list[str]:
    folder = conf / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def header_comment(conf: Path, config_name: str) -> list[str]:
    lines = []
    for line in (conf / f"{config_name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").rstrip())
    return lines


def used_groups(config_name: str, conf: Path) -> dict[str, str | None]:
    """group -> chosen option, for the groups this app's defaults list composes (Hydra's own groups left out)."""
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg: DictConfig = compose(config_name, return_hydra_config=True, overrides=[])
    choices = dict(cfg.hydra.runtime.choices)
    return {g: (None if c is None else str(c)) for g, c in sorted(choices.items()) if not g.startswith(HIDDEN_PREFIXES)}


def app_help(app: str, config_name: str) -> str:
    conf = config_dir()
    lines = [f"{app}: a Hydra app configured by conf/{config_name}.yaml", ""]
    lines += [f"  {line}" for line in header_comment(conf, config_name)]
    lines += ["", "Config groups it uses (choose with group=option):"]
    for group, choice in used_groups(config_name, conf).items():
        options = group_options(conf, group.split("@")[0])
        lines.append(f"  {group:<28} {choice or 'null':<28} options: {', '.join(options) if options else '-'}")
    lines += ["", "Override any key with key=value; --cfg job prints the composed config; DETSIM_DEBUG=1 shows tracebacks.",
              "User errors exit with status 2 and one line naming the file or key."]
    return "\n".join(lines)
