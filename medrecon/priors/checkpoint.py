"""Checkpoints: ``safetensors`` weights + a JSON manifest, and the loaded :class:`Prior`.

A checkpoint ``<base>`` is two files written side by side:

* ``<base>.safetensors`` — the UNet's ``state_dict`` (parameters in float16 by default, buffers
  in float32). ``safetensors`` holds raw tensors only: loading never unpickles anything.
* ``<base>.json`` — the manifest, with at least the keys in :data:`REQUIRED_KEYS`:

  ============== ==========================================================================
  name           short name, e.g. ``"mri"``
  arch           ``"unet"`` (:class:`~medrecon.priors.UNet`)
  config         ``UNet.config``; ``UNet(**config)`` rebuilds the network
  precond        ``{"sigma_data", "sigma_min", "sigma_max"}`` of :class:`EDMPrecond`
  channels       real network channels (2 for one complex MRI image, 1 for CT)
  complex        whether data images are complex (then ``channels = 2·C``)
  image_size     training patch size (int, or [H, W])
  value_scaling  how images were normalised, see :func:`fit_scaling`
  data_recipe    how the training data were made (free-form dict or string)
  training_command  the exact command that trained it
  steps, device, train_seconds  training length and where it ran
  sha256         hex SHA-256 of the ``.safetensors`` file, verified on every :func:`load`
  ============== ==========================================================================

``load("mri")`` resolves a bare name to ``<repo>/checkpoints/mri.safetensors`` (``<repo>`` is the
folder holding the ``medrecon`` package; the environment variable ``MEDRECON_CHECKPOINTS``
replaces ``<repo>/checkpoints``).

Value scaling (pure functions, one place): a prior sees images ``x_n = (x − offset) / scale``
where ``(offset, scale)`` come from :func:`fit_scaling` and the manifest's ``value_scaling``:

* ``{"kind": "percentile", "percentile": p, "target": t}`` — per image, ``offset = 0`` and
  ``scale = quantile(|x|, p/100) / t`` (MRI: magnitudes, so complex phase is preserved); with an
  optional ``"floor_fraction_of_max": f`` the quantile is floored at ``f·max|x|``
  (:func:`medrecon.data.magnitude_scale`'s rule for nearly empty images);
* ``{"kind": "hu_window", "low": L, "high": H}`` (or ``"center"``/``"width"``), optional
  ``"target_low"``/``"target_high"`` (default 0, 1) — the fixed linear map taking Hounsfield
  units L ↦ target_low and H ↦ target_high, without clipping (so it is exactly invertible; a
  ``"clip"`` entry, used when making training data, is ignored here);
* ``{"kind": "scale", "scale": s}`` — ``x / s``; ``{"kind": "none"}`` — identity.

A measurement noise level transforms like the image: ``σ_n = σ / scale``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import torch
from torch import nn

import medrecon
from medrecon import MedreconError
from medrecon.priors.base import Sigma, real_dtype
from medrecon.priors.edm import ComplexAsChannels, EDMPrecond
from medrecon.priors.unet import UNet

__all__ = [
    "REQUIRED_KEYS", "Prior", "ValueScale", "save", "save_pair", "load", "available", "checkpoints_dir",
    "file_sha256", "fit_scaling", "normalize", "denormalize",
]

REQUIRED_KEYS: tuple[str, ...] = (
    "name", "arch", "config", "precond", "channels", "complex", "image_size", "value_scaling",
    "data_recipe", "training_command", "steps", "device", "train_seconds", "sha256",
)
PRECOND_KEYS = ("sigma_data", "sigma_min", "sigma_max")
PathLike = Union[str, "os.PathLike[str]"]


# ------------------------------------------------------------------------------------------------
# value scaling
class ValueScale(NamedTuple):
    """Per-image affine normalisation ``x_n = (x − offset) / scale``; both ``[B]`` real tensors."""

    offset: torch.Tensor
    scale: torch.Tensor


def _view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (x.ndim - 1))


def fit_scaling(x: torch.Tensor, value_scaling: dict) -> ValueScale:
    """The :class:`ValueScale` for images ``x [B, ...]`` under a manifest's ``value_scaling`` (module doc)."""
    kind = value_scaling.get("kind")
    batch, dtype = x.shape[0], real_dtype(x.dtype)
    ones = torch.ones(batch, dtype=dtype, device=x.device)
    if kind == "percentile":
        q = float(value_scaling["percentile"]) / 100.0
        mag = x.abs().reshape(batch, -1).to(dtype)
        level = torch.quantile(mag, q, dim=1) if mag.shape[1] <= 2**24 else mag.max(dim=1).values
        floor = float(value_scaling.get("floor_fraction_of_max", 0.0))
        if floor > 0:
            level = torch.maximum(level, floor * mag.amax(dim=1))
        level = torch.where(level > 0, level, ones)  # an all-zero image keeps scale 1
        return ValueScale(0 * ones, level / float(value_scaling.get("target", 1.0)))
    if kind == "hu_window":
        if "low" in value_scaling:
            low, high = float(value_scaling["low"]), float(value_scaling["high"])
        else:
            c, w = float(value_scaling["center"]), float(value_scaling["width"])
            low, high = c - w / 2, c + w / 2
        t0, t1 = float(value_scaling.get("target_low", 0.0)), float(value_scaling.get("target_high", 1.0))
        if x.is_complex() or high <= low or t1 == t0:
            raise MedreconError(f"hu_window scaling needs real images and low < high, received {value_scaling}, {x.dtype}")
        scale = (high - low) / (t1 - t0)
        return ValueScale((low - t0 * scale) * ones, scale * ones)
    if kind == "scale":
        return ValueScale(0 * ones, float(value_scaling["scale"]) * ones)
    if kind == "none":
        return ValueScale(0 * ones, ones)
    raise MedreconError(
        f"unknown value_scaling kind {kind!r} in {value_scaling}; expected 'percentile', 'hu_window', 'scale' or 'none'"
    )


def normalize(x: torch.Tensor, vs: ValueScale) -> torch.Tensor:
    """``(x − offset) / scale`` per batch item."""
    return (x - _view(vs.offset, x)) / _view(vs.scale, x)


def denormalize(x: torch.Tensor, vs: ValueScale) -> torch.Tensor:
    """Inverse of :func:`normalize`: ``x·scale + offset``."""
    return x * _view(vs.scale, x) + _view(vs.offset, x)


# ------------------------------------------------------------------------------------------------
# the loaded prior
class Prior(nn.Module):
    """A trained prior: an :class:`EDMPrecond` UNet plus its manifest, callable as ``D(x, σ)``.

    ``x`` is complex ``[B, C, H, W]`` for a complex prior (mapped to 2C real network channels by
    :class:`ComplexAsChannels`) or real ``[B, C, H, W]``; the result has ``x``'s shape and dtype.
    Inputs are in the prior's normalised value range (see :meth:`fit_scaling`).

    Attributes:
        name, manifest, path: from the checkpoint (``path`` is None for an in-memory prior).
        complex: whether data images are complex.
        channels: real network channels (2 for one complex image, 1 for CT).
        data_channels: image channels C of ``x`` (``channels // 2`` if complex).
        image_size: the training patch size (the network runs at any size).
        sigma_min, sigma_max, sigma_data: from the preconditioning.
    """

    def __init__(self, precond: EDMPrecond, manifest: dict, path: Optional[Path] = None) -> None:
        super().__init__()
        self.model = ComplexAsChannels(precond)  # complex ↔ [re, im] channels; real x passes through
        self.manifest, self.path = dict(manifest), path
        self.name = str(manifest.get("name", "prior"))
        self.complex = bool(manifest["complex"])
        self.channels = int(getattr(precond.net, "in_channels", manifest.get("channels", 0)))
        if self.complex and self.channels % 2:
            raise MedreconError(f"{self._where()}: a complex prior needs an even channel count, found {self.channels}")
        self.data_channels = self.channels // 2 if self.complex else self.channels
        self.image_size = manifest.get("image_size")
        self.sigma_min, self.sigma_max = precond.sigma_min, precond.sigma_max
        self.sigma_data = precond.sigma_data

    @property
    def precond(self) -> EDMPrecond:
        """The wrapped :class:`EDMPrecond` (real channels in and out)."""
        return self.model.model

    def _where(self) -> str:
        return f"prior {self.name!r}" + (f" ({self.path})" if self.path else "")

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`MedreconError` unless ``x`` is ``[B, data_channels, H, W]`` of the right kind."""
        kind = "complex" if self.complex else "real"
        ok = isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == self.data_channels
        ok = ok and (x.is_complex() if self.complex else x.is_floating_point())
        if not ok:
            got = f"{type(x).__name__}" if not isinstance(x, torch.Tensor) else (
                f"{'complex' if x.is_complex() else 'real'} {tuple(x.shape)} {x.dtype}")
            raise MedreconError(
                f"{self._where()} expects {kind} images [B, {self.data_channels}, H, W] "
                f"({self.channels} network channels), received {got}"
            )

    def forward(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        self.check_input(x)
        return self.model(x, sigma)

    def fit_scaling(self, x: torch.Tensor) -> ValueScale:
        """:func:`fit_scaling` with this prior's ``manifest["value_scaling"]``."""
        return fit_scaling(x, self.manifest["value_scaling"])

    def extra_repr(self) -> str:
        return f"name={self.name!r}, complex={self.complex}, channels={self.channels}, sigma=[{self.sigma_min}, {self.sigma_max}]"


# ------------------------------------------------------------------------------------------------
# files
def checkpoints_dir() -> Path:
    """``$MEDRECON_CHECKPOINTS`` if set, else ``<repo>/checkpoints``."""
    env = os.environ.get("MEDRECON_CHECKPOINTS")
    return Path(env) if env else Path(medrecon.__file__).resolve().parents[1] / "checkpoints"


def available() -> list[str]:
    """Names of the checkpoints in :func:`checkpoints_dir` (those with both files, and coarse-to-fine pairs)."""
    folder = checkpoints_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json")
                  if p.with_suffix(".safetensors").is_file() or _is_pair(p))


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _base(path: PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def _files(base: Path) -> tuple[Path, Path]:
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def _unwrap(model: nn.Module) -> tuple[nn.Module, Optional[EDMPrecond]]:
    precond = None
    while True:
        if isinstance(model, Prior):
            model = model.precond
        elif isinstance(model, ComplexAsChannels):
            model = model.model
        elif isinstance(model, EDMPrecond):
            precond, model = model, model.net
        else:
            return model, precond


def save(path: PathLike, model: nn.Module, manifest: dict, dtype: torch.dtype = torch.float16) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns the ``.safetensors`` path.

    ``model`` is an :class:`EDMPrecond` (or a :class:`Prior`, or a bare :class:`UNet`, whose
    manifest must then hold ``precond``). ``arch``, ``config``, ``precond``, ``channels`` and
    ``sha256`` are filled in from the model (given values must agree); every other key of
    :data:`REQUIRED_KEYS` must be in ``manifest``. Floating parameters are stored as ``dtype``,
    buffers in float32. Each file is written to a temporary name and renamed into place.
    """
    from safetensors.torch import save_file

    from medrecon.io.atomic import atomic_path

    st_path, json_path = _files(_base(path))
    net, precond = _unwrap(model)
    if not isinstance(net, UNet):
        raise MedreconError(f"save({st_path}): only UNet networks are supported (arch 'unet'), received {type(net).__name__}")
    derived: dict[str, Any] = {"arch": "unet", "config": net.config, "channels": net.in_channels}
    if precond is not None:
        derived["precond"] = {k: getattr(precond, k) for k in PRECOND_KEYS}
    full = dict(manifest)
    for key, value in derived.items():
        if key in full and json.loads(json.dumps(full[key])) != json.loads(json.dumps(value)):
            raise MedreconError(f"save({st_path}): manifest[{key!r}] = {full[key]!r} disagrees with the model's {value!r}")
        full[key] = value
    missing = [k for k in REQUIRED_KEYS if k != "sha256" and k not in full]
    if missing:
        raise MedreconError(f"save({st_path}): the manifest lacks required key(s) {missing}")
    if bool(full["complex"]) and (net.in_channels % 2 or net.out_channels != net.in_channels):
        raise MedreconError(f"save({st_path}): a complex prior needs an even, equal in/out channel count, got {net.config}")

    buffers = {name for name, _ in net.named_buffers()}
    tensors = {
        k: v.detach().to("cpu", dtype=dtype if (v.is_floating_point() and k not in buffers) else
                         (torch.float32 if v.is_floating_point() else v.dtype)).contiguous()
        for k, v in net.state_dict().items()
    }
    with atomic_path(st_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "name": str(full["name"])})
        full["sha256"] = file_sha256(tmp)
    full["weights_dtype"] = str(dtype).replace("torch.", "")
    full["params"] = int(sum(p.numel() for p in net.parameters()))
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return st_path


def _resolve(name_or_path: PathLike) -> tuple[Path, Path]:
    text = os.fspath(name_or_path)
    base = _base(Path(text))
    st_path, json_path = _files(base)
    is_name = (os.sep not in text and "/" not in text and Path(text).suffix == ""
               and not st_path.exists() and not json_path.exists())
    if is_name:
        st_path, json_path = _files(checkpoints_dir() / text)
    if json_path.is_file() and not st_path.exists() and _is_pair(json_path):
        return st_path, json_path  # a coarse-to-fine pair is a manifest only
    if not st_path.is_file() or not json_path.is_file():
        absent = [str(p) for p in (st_path, json_path) if not p.is_file()]
        raise MedreconError(
            f"checkpoint {text!r}: missing file(s) {absent}; shipped priors in {checkpoints_dir()}: {available()}"
        )
    return st_path, json_path


PAIR_ARCH = "coarse_to_fine"
PAIR_KEYS = ("name", "arch", "fine", "coarse", "sigma_switch", "sha256")


def _read_manifest(json_path: Path) -> dict:
    try:
        manifest = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MedreconError(f"{json_path}: not a valid JSON manifest ({err})") from err
    if not isinstance(manifest, dict):
        raise MedreconError(f"{json_path}: the manifest must be a JSON object, found {type(manifest).__name__}")
    return manifest


def _is_pair(json_path: Path) -> bool:
    try:
        return json.loads(json_path.read_text()).get("arch") == PAIR_ARCH
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False


def _load_pair(manifest: dict, json_path: Path, device: Optional[Union[str, torch.device]]) -> nn.Module:
    """A :class:`~medrecon.priors.cascade.CoarseToFine` from its manifest: ``fine`` and ``coarse``
    name checkpoints beside it, each checked against the pair's recorded ``sha256[name]``."""
    from medrecon.priors.cascade import CoarseToFine

    for key in PAIR_KEYS:
        if key not in manifest:
            raise MedreconError(f"{json_path}: the coarse-to-fine manifest lacks the required key {key!r}")
    parts = {}
    for role in ("fine", "coarse"):
        name = manifest[role]
        if not isinstance(name, str) or not name or "/" in name or name == json_path.stem:
            raise MedreconError(f"{json_path}: {role!r} must name another checkpoint in its folder, found {name!r}")
        prior = load(json_path.with_name(name + ".safetensors"), device=device)
        if isinstance(prior, CoarseToFine):  # before the hash check: a pair's "sha256" is a dict of its parts
            raise MedreconError(f"{json_path}: the {role} prior {name!r} is itself a pair")
        expected = (manifest["sha256"] or {}).get(name) if isinstance(manifest["sha256"], dict) else None
        if expected != prior.manifest["sha256"]:
            raise MedreconError(f"{json_path}: the {role} prior {name!r} has sha256 {prior.manifest['sha256']}, "
                                f"the pair expects {expected}")
        parts[role] = prior
    try:
        switch = float(manifest["sigma_switch"])
    except (TypeError, ValueError) as err:
        raise MedreconError(f"{json_path}: 'sigma_switch' must be a number, found {manifest['sigma_switch']!r}") from err
    try:
        pair = CoarseToFine(parts["fine"], parts["coarse"], switch, name=str(manifest["name"]), manifest=manifest)
    except MedreconError as err:
        raise MedreconError(f"{json_path}: {err}") from err
    pair.path = json_path
    return pair.eval()


def save_pair(path: PathLike, fine: str, coarse: str, sigma_switch: float, **extra: Any) -> Path:
    """Write the manifest ``<path>.json`` of a :class:`~medrecon.priors.cascade.CoarseToFine` pair of
    the checkpoints ``fine`` and ``coarse`` (names of checkpoints in the same folder), recording their
    sha256; ``extra`` keys (e.g. how σ_switch was measured) are stored as given. Returns the path."""
    from medrecon.io.atomic import atomic_path

    json_path = _base(Path(path)).with_suffix(".json")
    sha = {}
    for name in (fine, coarse):
        part = json_path.with_name(name + ".json")
        if not part.is_file() or not json_path.with_name(name + ".safetensors").is_file():
            raise MedreconError(f"save_pair({json_path}): no checkpoint {name!r} beside it")
        sha[name] = _read_manifest(part)["sha256"]
    manifest = {"name": json_path.stem, "arch": PAIR_ARCH, "fine": fine, "coarse": coarse,
                "sigma_switch": float(sigma_switch), "sha256": sha, **extra}
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    load(json_path.with_suffix(".safetensors"))  # what was written loads
    return json_path


def load(name_or_path: PathLike, device: Optional[Union[str, torch.device]] = None) -> Prior:
    """Load a checkpoint as a :class:`Prior` (float32 weights, eval mode, no parameter gradients).

    ``name_or_path``: a shipped name (``"mri"``, ``"ct"``) or a path with or without the
    ``.safetensors`` suffix. Raises :class:`MedreconError` naming the file when a file is missing,
    the manifest is not valid JSON or lacks a key, the SHA-256 differs, or the weights do not fit
    the configured network. Call ``prior.requires_grad_(True)`` to fine-tune.

    A manifest with ``"arch": "coarse_to_fine"`` (no weights of its own) loads as a
    :class:`~medrecon.priors.cascade.CoarseToFine` of the two checkpoints it names, each checked
    against the sha256 the pair records for it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    st_path, json_path = _resolve(name_or_path)
    manifest = _read_manifest(json_path)
    if manifest.get("arch") == PAIR_ARCH:
        return _load_pair(manifest, json_path, device)
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise MedreconError(f"{json_path}: the manifest lacks the required key {key!r}")
    actual = file_sha256(st_path)
    if actual != manifest["sha256"]:
        raise MedreconError(f"{st_path}: sha256 mismatch: the manifest expects {manifest['sha256']}, the file has {actual}")
    if manifest["arch"] != "unet":
        raise MedreconError(f"{json_path}: unknown arch {manifest['arch']!r}; expected 'unet'")
    precond_cfg = manifest["precond"]
    if not isinstance(precond_cfg, dict) or any(k not in precond_cfg for k in PRECOND_KEYS):
        raise MedreconError(f"{json_path}: 'precond' must hold {list(PRECOND_KEYS)}, found {precond_cfg!r}")
    try:
        net = UNet(**manifest["config"])
    except (TypeError, ValueError) as err:
        raise MedreconError(f"{json_path}: 'config' does not build a UNet: {err}") from err
    if int(manifest["channels"]) != net.in_channels:
        raise MedreconError(f"{json_path}: 'channels' = {manifest['channels']} but the config has in_channels = {net.in_channels}")
    try:
        state = load_file(str(st_path), device="cpu")
    except SafetensorError as err:
        raise MedreconError(f"{st_path}: not a readable safetensors file ({err})") from err
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise MedreconError(
            f"{st_path}: weights do not fit the manifest's UNet config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    precond = EDMPrecond(net, **{k: float(precond_cfg[k]) for k in PRECOND_KEYS})
    prior = Prior(precond, manifest, path=st_path).eval().requires_grad_(False)
    return prior.to(device) if device is not None else prior
