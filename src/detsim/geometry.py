"""Calorimeter geometries: which voxel is which cell.

Two kinds of layer exist. A `RadialLayer` is a CaloChallenge-style ring of `n_r` radial bins times
`n_alpha` angular bins around the shower axis; a `GridLayer` is a CaloGAN-style rectangular grid.
Voxel order inside a radial layer is radial bin fastest, then angular bin, so
`showers.reshape(N, n_layers, n_alpha, n_r)` restores the cells of uniform geometries; angular bin 0
starts at alpha = -pi (alpha = atan2(y, x)). Inside a grid layer the x column runs fastest, so a
CaloGAN `layer_0` array (N, 3, 96) flattens to its voxels with `reshape(N, -1)`.
Lengths are mm.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from omegaconf import OmegaConf

from detsim.errors import ConfigError, DataFileError
from detsim.paths import config_dir


@dataclass(frozen=True)
class RadialLayer:
    """A layer binned in radius (mm) and in the angle alpha around the shower axis."""

    id: int
    r_edges: tuple[float, ...]
    n_alpha: int

    def __post_init__(self) -> None:
        edges = np.asarray(self.r_edges, dtype=float)
        if edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
            raise ConfigError(
                f"layer {self.id}: r_edges must be >= 2 increasing non-negative values, got {self.r_edges}"
            )
        if self.n_alpha < 1:
            raise ConfigError(f"layer {self.id}: n_alpha must be >= 1, got {self.n_alpha}")

    @property
    def n_r(self) -> int:
        return len(self.r_edges) - 1

    @property
    def n_voxels(self) -> int:
        return self.n_r * self.n_alpha

    @property
    def shape(self) -> tuple[int, int]:
        """(n_alpha, n_r): the cell array of one shower in this layer."""
        return (self.n_alpha, self.n_r)

    def alpha_edges(self) -> np.ndarray:
        return np.linspace(-np.pi, np.pi, self.n_alpha + 1)

    def cell_centres_polar(self) -> tuple[np.ndarray, np.ndarray]:
        """(r, alpha) of each voxel centre, in voxel order (radial fastest)."""
        edges = np.asarray(self.r_edges, dtype=float)
        r_mid = 0.5 * (edges[:-1] + edges[1:])
        a_edges = self.alpha_edges()
        a_mid = 0.5 * (a_edges[:-1] + a_edges[1:])
        alpha, r = np.meshgrid(a_mid, r_mid, indexing="ij")
        return r.ravel(), alpha.ravel()

    def cell_centres_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of each voxel centre; a layer with one angular bin is a full ring centred on the axis."""
        r, alpha = self.cell_centres_polar()
        if self.n_alpha == 1:
            return np.zeros_like(r), np.zeros_like(r)
        return r * np.cos(alpha), r * np.sin(alpha)

    def cell_areas(self) -> np.ndarray:
        edges = np.asarray(self.r_edges, dtype=float)
        ring = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2) / self.n_alpha
        return np.tile(ring, self.n_alpha)


@dataclass(frozen=True)
class GridLayer:
    """A layer of `n_y` rows x `n_x` columns of rectangular cells (mm), centred on the shower axis."""

    id: int
    n_x: int
    n_y: int
    cell_x: float
    cell_y: float

    def __post_init__(self) -> None:
        if min(self.n_x, self.n_y) < 1 or min(self.cell_x, self.cell_y) <= 0:
            raise ConfigError(f"layer {self.id}: grid needs positive n_x, n_y, cell_x, cell_y")

    @property
    def n_voxels(self) -> int:
        return self.n_x * self.n_y

    @property
    def shape(self) -> tuple[int, int]:
        """(n_y, n_x): the cell array of one shower in this layer."""
        return (self.n_y, self.n_x)

    def cell_centres_xy(self) -> tuple[np.ndarray, np.ndarray]:
        xs = (np.arange(self.n_x) - (self.n_x - 1) / 2) * self.cell_x
        ys = (np.arange(self.n_y) - (self.n_y - 1) / 2) * self.cell_y
        y, x = np.meshgrid(ys, xs, indexing="ij")
        return x.ravel(), y.ravel()

    def cell_centres_polar(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.cell_centres_xy()
        return np.hypot(x, y), np.arctan2(y, x)

    def cell_areas(self) -> np.ndarray:
        return np.full(self.n_voxels, self.cell_x * self.cell_y)


Layer = RadialLayer | GridLayer


@dataclass(frozen=True)
class Geometry:
    """An ordered list of non-empty layers; voxel index ranges follow the list order."""

    name: str
    layers: tuple[Layer, ...]
    particle: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError(f"geometry {self.name!r} has no layer with voxels")
        ids = [layer.id for layer in self.layers]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"geometry {self.name!r}: duplicate layer ids {ids}")

    # --- sizes and slices -------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "radial" if all(isinstance(layer, RadialLayer) for layer in self.layers) else "grid"

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def layer_ids(self) -> list[int]:
        return [layer.id for layer in self.layers]

    @cached_property
    def layer_offsets(self) -> np.ndarray:
        """Start voxel of each layer, with n_voxels appended."""
        return np.concatenate([[0], np.cumsum([layer.n_voxels for layer in self.layers])]).astype(int)

    @property
    def n_voxels(self) -> int:
        return int(self.layer_offsets[-1])

    def layer_slice(self, position: int) -> slice:
        """Voxel slice of the layer at `position` in the list (not its id)."""
        return slice(int(self.layer_offsets[position]), int(self.layer_offsets[position + 1]))

    @property
    def layer_slices(self) -> list[slice]:
        return [self.layer_slice(i) for i in range(self.n_layers)]

    def layer_position(self, layer_id: int) -> int:
        try:
            return self.layer_ids.index(layer_id)
        except ValueError as exc:
            raise ConfigError(f"geometry {self.name!r} has no layer id {layer_id}; ids: {self.layer_ids}") from exc

    @property
    def is_uniform(self) -> bool:
        """All layers have the same cell shape, so showers reshape to (N, L, A, R) or (N, L, Y, X)."""
        return len({(type(layer), layer.shape) for layer in self.layers}) == 1

    # --- per-voxel maps -----------------------------------------------------------------------
    @cached_property
    def voxel_layer_position(self) -> np.ndarray:
        """Position (0..n_layers-1) of the layer holding each voxel."""
        return np.repeat(np.arange(self.n_layers), [layer.n_voxels for layer in self.layers])

    @cached_property
    def voxel_layer_id(self) -> np.ndarray:
        return np.asarray(self.layer_ids)[self.voxel_layer_position]

    @cached_property
    def voxel_cell_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(alpha bin, r bin) for radial layers or (row y, column x) for grids, of each voxel."""
        first, second = [], []
        for layer in self.layers:
            rows, cols = np.unravel_index(np.arange(layer.n_voxels), layer.shape)
            first.append(rows)
            second.append(cols)
        return np.concatenate(first), np.concatenate(second)

    def voxel_index(self, layer_id: int, first: int, second: int) -> int:
        """Flat voxel index of (layer id, alpha bin, r bin) or (layer id, row, column)."""
        position = self.layer_position(layer_id)
        layer = self.layers[position]
        return int(self.layer_offsets[position] + np.ravel_multi_index((first, second), layer.shape))

    def _concat(self, method: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [getattr(layer, method)() for layer in self.layers]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])

    @cached_property
    def cell_centres_xy(self) -> tuple[np.ndarray, np.ndarray]:
        return self._concat("cell_centres_xy")

    @cached_property
    def cell_centres_polar(self) -> tuple[np.ndarray, np.ndarray]:
        return self._concat("cell_centres_polar")

    @cached_property
    def cell_areas(self) -> np.ndarray:
        return np.concatenate([layer.cell_areas() for layer in self.layers])

    def layer_energies(self, showers: np.ndarray) -> np.ndarray:
        """Energy per layer, shape (N, n_layers)."""
        return np.add.reduceat(np.asarray(showers), self.layer_offsets[:-1], axis=1)

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Geometry":
        """Build from a `conf/geometry/*.yaml` mapping (lists of numbers, or a `uniform` shorthand)."""
        name = str(cfg.get("name", "custom"))
        particle = cfg.get("particle")
        layer_cfgs: Sequence[Mapping[str, Any]] = list(cfg.get("layers") or [])
        uniform = cfg.get("uniform")
        if uniform is not None:
            ids = uniform.get("layer_ids") or list(range(int(uniform["n_layers"])))
            body = {k: v for k, v in dict(uniform).items() if k not in ("n_layers", "layer_ids")}
            layer_cfgs = [dict(body, id=i) for i in ids]
        if not layer_cfgs:
            raise ConfigError(f"geometry {name!r}: config needs `layers` or `uniform`")
        layers: list[Layer] = []
        for lc in layer_cfgs:
            if "r_edges" in lc:
                edges = tuple(float(e) for e in lc["r_edges"])
                if len(edges) < 2:
                    continue  # a listed layer without voxels, as in the challenge's binning files
                layers.append(RadialLayer(int(lc["id"]), edges, int(lc.get("n_alpha", 1))))
            elif "n_x" in lc:
                layers.append(
                    GridLayer(int(lc["id"]), int(lc["n_x"]), int(lc["n_y"]), float(lc["cell_x"]), float(lc["cell_y"]))
                )
            else:
                raise ConfigError(f"geometry {name!r}: layer {dict(lc)} needs r_edges or n_x/n_y/cell_x/cell_y")
        meta = {k: v for k, v in dict(cfg).items() if k not in ("name", "particle", "layers", "uniform", "_target_")}
        return cls(name=name, layers=tuple(layers), particle=particle, meta=meta)

    @classmethod
    def from_xml(cls, path: str | Path, name: str | None = None) -> "Geometry":
        """Read a CaloChallenge binning file (`<Bins><Bin><Layer id r_edges n_bin_alpha/>`)."""
        path = Path(path)
        if not path.is_file():
            raise DataFileError(path, None, "a CaloChallenge binning XML file", "no such file")
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise DataFileError(path, None, "well-formed XML", f"parse error: {exc}") from exc
        bin_el = root if root.tag == "Bin" else root.find("Bin")
        if bin_el is None:
            raise DataFileError(path, "Bin", "a <Bin> element", "none")
        layers_cfg = []
        for el in bin_el.findall("Layer"):
            try:
                layers_cfg.append(
                    {
                        "id": int(el.attrib["id"]),
                        "r_edges": [float(v) for v in el.attrib["r_edges"].split(",") if v.strip()],
                        "n_alpha": int(el.attrib.get("n_bin_alpha", 1)),
                    }
                )
            except (KeyError, ValueError) as exc:
                raise DataFileError(path, f"Layer {el.attrib}", "id, r_edges, n_bin_alpha", repr(exc)) from exc
        return cls.from_config(
            {"name": name or path.stem, "particle": bin_el.attrib.get("name"), "layers": layers_cfg}
        )

    def describe(self) -> str:
        parts = [f"{layer.id}:{'x'.join(map(str, layer.shape))}" for layer in self.layers]
        return f"{self.name} ({self.n_voxels} voxels; layers {' '.join(parts)})"


def load_geometry(spec: Mapping[str, Any] | str | Path) -> Geometry:
    """A geometry from a config mapping, a binning XML path, or a YAML file path."""
    if isinstance(spec, Mapping):
        if "xml" in spec and spec["xml"]:
            return Geometry.from_xml(spec["xml"], name=spec.get("name"))
        return Geometry.from_config(spec)
    path = Path(spec)
    if path.suffix.lower() == ".xml":
        return Geometry.from_xml(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise DataFileError(path, None, "a geometry YAML file", "no such file")
        return Geometry.from_config(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    raise ConfigError(f"cannot load a geometry from {spec!r}: give a config mapping, .xml or .yaml")


def known_voxel_counts() -> dict[int, str]:
    """Voxel count -> name of every geometry in `conf/geometry/`: what a file of unnamed geometry is checked against."""
    counts: dict[int, str] = {}
    for path in sorted((config_dir() / "geometry").glob("*.yaml")):
        try:
            geometry = load_geometry(path)
        except DataFileError:
            continue  # a geometry whose binning file is absent on this machine cannot be matched
        counts.setdefault(geometry.n_voxels, geometry.name)
    return counts


def check_known_voxel_count(path: str | Path, key: str, n_voxels: int) -> None:
    """Refuse a voxel count that no known geometry has (a truncated or foreign file); name the known counts."""
    known = known_voxel_counts()
    if n_voxels not in known:
        listed = ", ".join(f"{n} ({name})" for n, name in sorted(known.items()))
        raise DataFileError(path, key, f"a known geometry's voxel count ({listed}) or geometry=<name>", f"{n_voxels}")
