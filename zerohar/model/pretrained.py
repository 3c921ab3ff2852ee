"""HARNet weights: the released checkpoints, zerohar's own backbone checkpoints, torch.hub, export.

Sources accepted by :func:`load_backbone`:

- ``None``: random initialisation.
- a released file (``.mdl``, ``.pt``, ``.pth``; e.g. ``mtl_5_best.mdl``): a plain ``torch.save`` of a
  DataParallel state_dict. It is read with ``weights_only=True``; the leading ``module.`` is stripped, the
  ``feature_extractor.*`` weights are kept, the classifier and pretext heads are dropped, and what was missing
  or unexpected is logged. The git blob id of the file is compared with the published ones (HARNET.md).
- a zerohar checkpoint (``.safetensors``, or a run directory holding ``model.safetensors``): a backbone
  written by :func:`save_backbone` (keys of :class:`HARNet`), or a whole ZeroHAR model (keys ``backbone.*``).
- ``"hub"``: ``torch.hub.load("OxWearables/ssl-wearables", variant, pretrained=True)`` (needs the network).

A distilled backbone (:class:`~zerohar.model.harnet.DistilledHARNet`, a narrower HARNet and a linear map) is its
own file format (:func:`save_student`, :func:`load_student`): it is not a HARNet of any released variant, so
:func:`load_backbone` refuses it.

:func:`export_released` writes the released key format, so HARNet tooling can load zerohar-pretrained weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import torch

from zerohar.errors import ZeroharError
from zerohar.io import atomic_write
from zerohar.model.harnet import VARIANTS, DistilledHARNet, HARNet, check_variant, check_width

log = logging.getLogger(__name__)

#: Git blob ids (`git hash-object FILE`) of the released checkpoints, from HARNET.md.
RELEASED_BLOB_IDS: dict[str, str] = {
    "harnet5": "2dd83bd98aefa944bfda7231e239bcbeec0a924c",
    "harnet10": "252acc5eb036bcf8d37d915ce0377ab2dd5f9104",
    "harnet30": "3d660c7fb4961669fb9a8655277a12674ca77864",
}
#: File names of the released checkpoints.
RELEASED_FILES: dict[str, str] = {
    "harnet5": "mtl_5_best.mdl",
    "harnet10": "mtl_best.mdl",
    "harnet30": "mtl_30_best.mdl",
}
HUB_REPO = "OxWearables/ssl-wearables"
TORCH_SUFFIXES = (".mdl", ".pt", ".pth")
#: Metadata tag of a backbone written by :func:`save_backbone`.
BACKBONE_FORMAT = "zerohar-harnet-backbone"
#: Metadata tag of a distilled backbone written by :func:`save_student`.
STUDENT_FORMAT = "zerohar-distilled-backbone"


# ---------------------------------------------------------------------------------------------- file helpers
def released_blob_id(path: str | Path) -> str:
    """The git blob id of a file (what `git hash-object FILE` prints): sha1 of `b"blob <size>\\0" + content`."""
    path = Path(path)
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def known_release(path: str | Path) -> str | None:
    """The variant whose released checkpoint `path` is, byte for byte (git blob id), else None."""
    blob = released_blob_id(path)
    return next((v for v, b in RELEASED_BLOB_IDS.items() if b == blob), None)


# ---------------------------------------------------------------------------------------------- state dicts
@cache
def _expected_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = HARNet(variant)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def infer_variant(state: Mapping[str, torch.Tensor]) -> str | None:
    """The HARNet variant whose keys and shapes `state` (un-prefixed HARNet keys) matches exactly, else None.

    harnet10 and harnet30 have the same weight shapes; their downsample `kernel` buffers tell them apart.
    """
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    matches = [v for v in VARIANTS if shapes == _expected_shapes(v)]
    if len(matches) == 1:
        return matches[0]
    # Files without some buffers: match on the keys present, if that leaves one variant.
    matches = [
        v for v in VARIANTS
        if shapes and all(_expected_shapes(v).get(k) == s for k, s in shapes.items())
    ]
    return matches[0] if len(matches) == 1 else None


def _strip_module(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def extract_backbone_state(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Split a checkpoint's state_dict into HARNet keys and the rest.

    Strips leading `module.`; takes the keys under `feature_extractor.` (released format) or `backbone.`
    (a ZeroHAR model) if any, else the keys that already look like HARNet keys (`layer1.` ... `layer5.`).

    Returns:
        (backbone state with HARNet keys, the dropped keys).
    """
    flat = {_strip_module(k): v for k, v in state.items()}
    for prefix in ("feature_extractor.", "backbone."):
        if any(k.startswith(prefix) for k in flat):
            kept = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
            return kept, sorted(k for k in flat if not k.startswith(prefix))
    is_layer = [k.split(".", 1)[0] in {f"layer{i}" for i in range(1, 6)} for k in flat]
    kept = {k: v for k, v, ok in zip(flat, flat.values(), is_layer) if ok}
    return kept, sorted(k for k, ok in zip(flat, is_layer) if not ok)


def _heads(keys: list[str]) -> str:
    """`['aot_h.0.weight', 'classifier.linear1.bias', ...]` -> 'aot_h, classifier'."""
    return ", ".join(sorted({k.split(".", 1)[0] for k in keys}))


def load_state_into(net: HARNet, state: Mapping[str, torch.Tensor], source: str, origin: str = "",
                    partial: bool = False) -> HARNet:
    """Load a checkpoint state_dict (any supported key format) into `net`, checking the architecture.

    Args:
        net: the backbone to fill.
        state: the checkpoint's state_dict.
        source: the file (or hub address), for messages.
        origin: what the file is, for the log line (e.g. "known release mtl_5_best.mdl").
        partial: accept a checkpoint that lacks some of the backbone's tensors (they keep their random
            initialisation, with a warning); by default that is an error.

    Raises:
        ZeroharError: the checkpoint holds no HARNet weights, those of another variant, or (without `partial`)
            not all of them.
    """
    kept, dropped = extract_backbone_state(state)
    expected = _expected_shapes(net.variant)
    if not any(k in expected for k in kept):
        sample = ", ".join(list(state)[:3]) or "none"
        raise ZeroharError(
            f"{source} holds no HARNet feature-extractor weights: expected keys like "
            f"'module.feature_extractor.layer1.0.weight' or 'layer1.0.weight', found {sample}"
        )
    bad = [k for k, v in kept.items() if k in expected and tuple(v.shape) != expected[k]]
    if bad:
        found = infer_variant(kept)
        if found is not None:
            raise ZeroharError(f"{source} holds a {found} backbone, but the model is {net.variant}")
        k = bad[0]
        raise ZeroharError(
            f"{source} holds a backbone that matches no HARNet variant: {k} has shape {tuple(kept[k].shape)}, "
            f"{net.variant} expects {expected[k]}"
        )
    result = net.load_state_dict(kept, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    log.info(
        "loaded %s backbone from %s (%s): %d tensors; missing: %s; unexpected: %s; dropped: %s",
        net.variant, source, origin or "checkpoint", len(kept) - len(unexpected),
        ", ".join(missing) or "none", ", ".join(unexpected) or "none",
        f"{len(dropped)} keys of {_heads(dropped)}" if dropped else "none",
    )
    if missing and not partial:
        raise ZeroharError(
            f"{source} lacks {len(missing)} of the {len(expected)} {net.variant} tensors ({missing[0]}, ...), which "
            "would keep their random initialisation; use a complete checkpoint or ask for a partial load "
            "(train.partial_backbone: true)"
        )
    if missing:
        log.warning("%s lacks %d of the %d %s tensors; they keep their random initialisation",
                    source, len(missing), len(expected), net.variant)
    return net


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file; all mean "unreadable"
        reason = "it holds objects other than tensors" if "weights_only" in str(e).lower() else "corrupt or truncated"
        raise ZeroharError(f"{path} is not a readable PyTorch state_dict ({reason}: {e.__class__.__name__})") from None
    # Some trainers wrap the state_dict: {"state_dict": {...}} or {"model": {...}}.
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ZeroharError(f"{path} is a PyTorch file but not a state_dict of tensors (found {type(obj).__name__})")
    return obj


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - SafetensorError / OSError / ValueError for a damaged file
        raise ZeroharError(f"{path} is not a readable safetensors file (corrupt or truncated: {e.__class__.__name__})"
                           ) from None
    return state, meta


def _load_hub(variant: str) -> dict[str, torch.Tensor]:
    try:
        hub_model = torch.hub.load(HUB_REPO, variant, pretrained=True, trust_repo=True)
    except Exception as e:  # noqa: BLE001 - network, git, or hub code errors: all mean "not available here"
        raise ZeroharError(
            f"could not fetch {variant} from torch.hub ({HUB_REPO}): {e.__class__.__name__}; the released weights "
            f"can be loaded from a local file instead (--backbone-weights {RELEASED_FILES[variant]})"
        ) from None
    fe = getattr(hub_model, "feature_extractor", None)
    if fe is None:
        raise ZeroharError(f"the torch.hub model {HUB_REPO}:{variant} has no feature_extractor")
    return {f"feature_extractor.{k}": v for k, v in fe.state_dict().items()}


# ---------------------------------------------------------------------------------------------- public API
def load_backbone(source: str | Path | None, variant: str | None = "harnet5", clip_input: bool = False,
                  partial: bool = False) -> HARNet:
    """A HARNet backbone initialised from `source`.

    Args:
        source: None (random init), a released checkpoint (`.mdl`, `.pt`, `.pth`), a zerohar checkpoint
            (`.safetensors`, or a run directory with `model.safetensors`), or `"hub"` (torch.hub, online).
        variant: "harnet5", "harnet10" or "harnet30"; None takes the variant of the checkpoint file.
        clip_input: see :class:`HARNet`.
        partial: accept a checkpoint that lacks some backbone tensors (see :func:`load_state_into`).

    Returns:
        The backbone, in training mode.

    Raises:
        ZeroharError: the file is missing, unreadable, of another variant, or holds no HARNet weights.

    Example:
        >>> net = load_backbone("mtl_5_best.mdl", "harnet5")  # doctest: +SKIP
    """
    if source is None or str(source) == "hub":
        if variant is None:
            raise ZeroharError("a HARNet variant (harnet5, harnet10 or harnet30) is needed without a checkpoint file")
        net = HARNet(check_variant(variant), clip_input=clip_input)
        if source is None:
            log.info("%s backbone randomly initialised", variant)
            return net
        return load_state_into(net, _load_hub(variant), f"torch.hub {HUB_REPO}:{variant}", "released weights",
                               partial)

    path = Path(source)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise ZeroharError(f"backbone checkpoint {path} does not exist")
    suffix = path.suffix.lower()
    release = None
    if suffix in TORCH_SUFFIXES:
        state = _read_torch(path)
        release = known_release(path)
        origin = f"known release {RELEASED_FILES[release]}" if release else "released format, not a known release"
    elif suffix == ".safetensors":
        state, meta = _read_safetensors(path)
        if meta.get("format") == STUDENT_FORMAT:
            raise ZeroharError(f"{path} is a distilled backbone (width {meta.get('width')}), not a HARNet of a "
                               "released variant; classify and eval run it with --distilled")
        origin = f"zerohar checkpoint, {meta.get('format', 'no format tag')}"
    else:
        raise ZeroharError(
            f"backbone checkpoint {path} has an unknown suffix {path.suffix!r}: expected a released HARNet file "
            f"({', '.join(TORCH_SUFFIXES)}), a zerohar .safetensors file or run directory, or 'hub'"
        )
    if variant is None:
        kept, _ = extract_backbone_state(state)
        variant = release or infer_variant(kept)
        if variant is None:
            raise ZeroharError(f"{path}: cannot tell which HARNet variant it holds; pass the variant explicitly")
    net = HARNet(check_variant(variant), clip_input=clip_input)
    if release is not None and release != variant:
        raise ZeroharError(f"{path} is the released {release} checkpoint ({RELEASED_FILES[release]}), "
                           f"but the model is {variant}")
    return load_state_into(net, state, str(path), origin, partial)


def save_backbone(backbone: HARNet, path: str | Path, extra: dict | None = None, force: bool = True) -> Path:
    """Write a backbone as zerohar's own checkpoint (`.safetensors`, HARNet keys, metadata with the variant).

    Args:
        backbone: the network.
        path: destination `.safetensors` file (written atomically).
        extra: JSON-serialisable metadata stored in the file header (e.g. pretraining data, epochs).
        force: overwrite an existing file.
    """
    from safetensors.torch import save_file

    meta = {"format": BACKBONE_FORMAT, "variant": backbone.variant, "extra": json.dumps(extra or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta), force=force)


def export_released(backbone: HARNet, path: str | Path, force: bool = False) -> Path:
    """Write `backbone` in the released HARNet key format (`module.feature_extractor.*`, torch.save).

    Other HARNet tooling (and :func:`load_backbone`) loads the file like a released checkpoint; it has no
    classifier or pretext heads, which those loaders drop anyway.

    Args:
        backbone: the network.
        path: destination (`.mdl` by convention), written atomically.
        force: overwrite an existing file.
    """
    state = {f"module.feature_extractor.{k}": v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    out = atomic_write(path, lambda tmp: torch.save(state, tmp), force=force)
    log.info("exported %s backbone in the released HARNet format to %s", backbone.variant, out)
    return out


def save_student(student: DistilledHARNet, path: str | Path, extra: dict | None = None, force: bool = True) -> Path:
    """Write a distilled backbone (`.safetensors`: keys `net.*` and `proj.*`; variant, width and feature size in
    the header, so :func:`load_student` rebuilds it without other files).

    Args:
        student: the network.
        path: destination `.safetensors` file (written atomically).
        extra: JSON-serialisable metadata stored in the header.
        force: overwrite an existing file.
    """
    from safetensors.torch import save_file  # as in save_backbone: only where a file is written

    meta = {"format": STUDENT_FORMAT, "variant": student.variant, "width": repr(float(student.width)),
            "out_dim": str(student.out_dim), "extra": json.dumps(extra or {})}
    state = {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta), force=force)


def first_mismatch(own: dict, state: dict) -> str | None:
    """The first tensor name that one state_dict has and the other lacks, or whose shapes differ; None if none."""
    names = sorted(set(own) ^ set(state)) or [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    return names[0] if names else None


def load_student(path: str | Path) -> DistilledHARNet:
    """The distilled backbone written by :func:`save_student`, in eval mode.

    Raises:
        ZeroharError: the file is missing, unreadable, not a distilled backbone, or its tensors do not fit the
            architecture its header describes.
    """
    path = Path(path)
    if not path.is_file():
        raise ZeroharError(f"distilled backbone {path} does not exist")
    state, meta = _read_safetensors(path)
    if meta.get("format") != STUDENT_FORMAT:
        raise ZeroharError(f"{path} is a {meta.get('format') or 'untagged'} file, not a distilled backbone "
                           f"({STUDENT_FORMAT})")
    try:
        variant, width, out_dim = check_variant(meta["variant"]), check_width(meta["width"]), int(meta["out_dim"])
    except (KeyError, ValueError) as e:
        raise ZeroharError(f"{path}: the header does not describe a distilled backbone ({e.__class__.__name__}: "
                           f"{e}); the file is damaged") from None
    student = DistilledHARNet(variant, width, out_dim)
    bad = first_mismatch(student.state_dict(), state)
    if bad:
        raise ZeroharError(f"{path} holds tensors that do not fit a {variant} student of width {width:g} "
                           f"(first differing tensor: {bad})")
    student.load_state_dict(state)
    log.info("loaded a distilled %s backbone of width %g from %s", variant, width, path)
    return student.eval()
