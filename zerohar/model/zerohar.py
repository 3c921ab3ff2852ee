"""The ZeroHAR model on a HARNet backbone, for any sensor layout.

Shapes: B windows, S sensors (triads) per window, C = 3 S channels, T samples, D backbone features,
E joint-space size, d_text sentence-embedding size.

- **Backbone** (HARNet), shared by every triad: `(B*S, 3, T) -> (B*S, D)`. Accelerometer triads are clipped
  to +-3 g (as HARNet was pretrained); magnetometer triads are scaled (uT -> ~unit range) so that every kind
  feeds the backbone values of a similar size. Which triad is which comes from `kinds` (see below).
- **Text projector R** (:meth:`ZeroHARModel.encode_text`): frozen sentence embeddings `(M, d_text) -> (M, E)`;
  shared by sensor context, channel (axis) descriptions and label descriptions.
- **Stage I head P** (:meth:`ZeroHARModel.encode_channels`): the feature of a triad -> 3 channel embeddings,
  aligned with the per-axis descriptions. The head never sees the context: it must recognise it from the signal.
- **Stage II** (:meth:`ZeroHARModel.encode_windows`): one token per sensor (projected backbone feature + projected
  sensor context), a small TransformerEncoder over the sensors of a window (no positional encoding: a window is
  a set of sensors, and a padding mask allows any number), masked mean pooling, projection -> `(B, E)`.
- **Label prototypes** (:meth:`ZeroHARModel.label_prototypes`): normalised mean of the normalised projected
  descriptions of each label; `logit_scale` is CLIP's learnable inverse temperature.

`cfg.encoder = "original"` swaps the backbone + sensor transformer for the ZeroHAR paper's encoder
(:mod:`zerohar.model.original`), behind the same interface, so benchmarks compare both in one pipeline.

**Sensor kinds.** `encode_channels` / `encode_windows` take `kinds=`: a :class:`SensorLayout`, a list of kind
names (`["acc", "gyro"]`), or an integer tensor `(S,)` / `(B, S)` of indices into `SENSOR_KINDS`. Without it
no triad is clipped or scaled (a one-time warning says so): pass the layout.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zerohar.config import ARCH_FIELDS, ModelConfig
from zerohar.data.layout import SENSOR_KINDS, SensorLayout
from zerohar.errors import ZeroharError
from zerohar.io import atomic_write
from zerohar.model.harnet import ACC_CLIP_G, HARNet
from zerohar.model.original import OriginalEncoder, transformer
from zerohar.model.pretrained import first_mismatch, load_backbone

log = logging.getLogger(__name__)

MODEL_FORMAT = "zerohar-model"
KindsLike = SensorLayout | Sequence[str] | torch.Tensor | None


def kind_indices(kinds: KindsLike, device: torch.device | None = None) -> torch.Tensor | None:
    """Sensor kinds as indices into `SENSOR_KINDS`: `(S,)` or `(B, S)` long tensor, or None."""
    if kinds is None:
        return None
    if isinstance(kinds, torch.Tensor):
        return kinds.to(device=device, dtype=torch.long)
    names = [s.sensor for s in kinds.sensors] if isinstance(kinds, SensorLayout) else list(kinds)
    bad = [k for k in names if k not in SENSOR_KINDS]
    if bad:
        raise ZeroharError(f"sensor kind {bad[0]!r} is not known to the model: expected one of "
                           f"{', '.join(SENSOR_KINDS)}")
    return torch.tensor([SENSOR_KINDS.index(k) for k in names], dtype=torch.long, device=device)


def scale_and_clip(
    triads: torch.Tensor, kinds: torch.Tensor, kind_scale: torch.Tensor, clip_acc: bool
) -> torch.Tensor:
    """The input handling of every HARNet triad (training, pretraining and inference alike).

    Args:
        triads: `(B, S, 3, T)` in canonical units (g, rad/s, uT).
        kinds: `(B, S)` index into `SENSOR_KINDS` of each triad.
        kind_scale: `(len(SENSOR_KINDS),)` multiplier per kind (magnetometers to about unit range).
        clip_acc: clip accelerometer triads to +-3 g, the range HARNet was pretrained on.

    Returns:
        `(B, S, 3, T)`, scaled and clipped.
    """
    triads = triads * kind_scale.to(triads.dtype)[kinds][:, :, None, None]
    if clip_acc:
        is_acc = (kinds == SENSOR_KINDS.index("acc"))[:, :, None, None]  # (B, S, 1, 1)
        triads = torch.where(is_acc, triads.clamp(-ACC_CLIP_G, ACC_CLIP_G), triads)
    return triads


def _masked_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `(B, S, d)` over S where `mask (B, S)` is True."""
    if mask is None:
        return h.mean(1)
    w = mask.to(h.dtype).unsqueeze(-1)  # (B, S, 1)
    return (h * w).sum(1) / w.sum(1).clamp(min=1)  # (B, d)


def label_prototypes(z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The one rule for a label's prototype: the normalised mean of its L2-normalised projected descriptions.

    Stage II trains windows against these prototypes, and the label index (hence evaluation and classify)
    names windows by them, so training and inference compare windows with the same vectors.

    Args:
        z: `(L, K, E)` projected description embeddings, L2-normalised along E.
        mask: `(L, K)` bool, True for real descriptions when labels have fewer than K (padding False).

    Returns:
        `(L, E)`, L2-normalised.
    """
    mask = None if mask is None else torch.as_tensor(mask, device=z.device)
    return F.normalize(_masked_mean(z, mask), dim=-1)


class ZeroHARModel(nn.Module):
    """ZeroHAR: sensor-context-aware IMU encoder aligned with text (see the module docstring).

    Args:
        cfg: the architecture; defaults to `ModelConfig()`.

    Example:
        >>> model = ZeroHARModel(ModelConfig()).eval()
        >>> x = torch.randn(2, 6, 150)                         # 2 windows, acc + gyro triads
        >>> ctx = torch.randn(2, 384)                          # one description embedding per sensor
        >>> model.encode_windows(x, ctx, kinds=["acc", "gyro"]).shape
        torch.Size([2, 256])
    """

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        e = cfg.embed_dim
        if cfg.text_proj == "linear":
            self.text_proj = nn.Linear(cfg.d_text, e)
        else:
            self.text_proj = nn.Sequential(nn.Linear(cfg.d_text, cfg.d_text), nn.GELU(), nn.Linear(cfg.d_text, e))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.register_buffer("kind_scale", torch.tensor([cfg.kind_scale.get(k, 1.0) for k in SENSOR_KINDS]),
                             persistent=False)
        if cfg.encoder == "harnet":
            self.backbone = HARNet(cfg.backbone)  # clipping is per triad kind, done here, not in the backbone
            d = self.backbone.out_dim
            self.channel_head = nn.Linear(d, 3 * e)  # Stage I head P
            self.sensor_proj = nn.Linear(d, cfg.d_model)
            self.context_proj = nn.Linear(e, cfg.d_model) if cfg.context_fusion != "none" else None
            self.merge = nn.Linear(2 * cfg.d_model, cfg.d_model) if cfg.context_fusion == "concat" else None
            self.sensor_encoder = transformer(cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.dropout)
            self.out_norm = nn.LayerNorm(cfg.d_model)
            self.window_proj = nn.Linear(cfg.d_model, e)
        else:
            self.original = OriginalEncoder(e, cfg.orig_d_model, cfg.orig_patch, cfg.orig_layers, cfg.n_heads,
                                            cfg.dropout, cfg.context_fusion)
        self.metadata: dict = {}
        self._warned_kinds = False

    # ------------------------------------------------------------------------------------------ helpers
    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_backbone(self, source, partial: bool = False) -> None:
        """Load backbone weights (see :func:`zerohar.model.pretrained.load_backbone` for `source` and `partial`)."""
        if self.cfg.encoder != "harnet":
            raise ZeroharError(f"backbone weights {source}: the original encoder has no HARNet backbone to initialise")
        self.backbone.load_state_dict(load_backbone(source, self.cfg.backbone, partial=partial).state_dict())

    def with_backbone(self, backbone: nn.Module) -> ZeroHARModel:
        """A shallow copy of the model whose backbone is `backbone` (`(N, 3, T) -> (N, D)`, the same D): every
        other module and parameter is shared, and the model itself is not modified. The fast inference path runs
        its fused or int8 backbone this way; `classify --distilled` its distilled one."""
        view = copy.copy(self)
        view._modules = dict(self._modules)
        view._modules["backbone"] = backbone
        return view

    def _triads(self, x: torch.Tensor, kinds: KindsLike) -> torch.Tensor:
        """`(B, C, T)` -> preprocessed `(B, S, 3, T)`: kind scaling and accelerometer clipping."""
        if x.ndim != 3 or x.shape[1] % 3:
            raise ZeroharError(f"windows must be shaped (B, C, T) with C a multiple of 3; got {tuple(x.shape)}")
        if self.cfg.encoder == "harnet" and x.shape[2] != self.cfg.window:
            raise ZeroharError(
                f"the model's {self.cfg.backbone} backbone takes windows of {self.cfg.window} samples "
                f"({self.cfg.window // 30} s at 30 Hz), the data has {x.shape[2]}: prepare the data with that "
                f"window length or choose the matching backbone"
            )
        b, c, t = x.shape
        triads = x.reshape(b, c // 3, 3, t)  # (B, S, 3, T)
        k = kind_indices(kinds, x.device)
        if k is None:
            if not self._warned_kinds:
                log.warning("no sensor kinds given: accelerometer triads are not clipped to +-3 g (pass kinds=layout)")
                self._warned_kinds = True
            return triads
        if k.shape[-1] != c // 3:
            raise ZeroharError(f"{k.shape[-1]} sensor kinds given for windows with {c // 3} sensors")
        return scale_and_clip(triads, k.expand(b, c // 3), self.kind_scale, self.cfg.clip_acc)

    def _check_mask(self, sensor_mask: torch.Tensor | None, b: int, s: int) -> torch.Tensor | None:
        if sensor_mask is None:
            return None
        if tuple(sensor_mask.shape) != (b, s):
            raise ZeroharError(f"sensor_mask has shape {tuple(sensor_mask.shape)}, expected ({b}, {s})")
        sensor_mask = sensor_mask.bool()
        if not bool(sensor_mask.any(1).all()):
            raise ZeroharError("a window has no sensor present (a sensor_mask row is all False)")
        return sensor_mask

    def triad_features(self, triads: torch.Tensor, sensor_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Backbone features `(B, S, D)` of preprocessed triads `(B, S, 3, T)`.

        Only present sensors go through the backbone (faster, and padding never enters BatchNorm statistics);
        absent ones get zeros.
        """
        b, s, _, t = triads.shape
        flat = triads.reshape(b * s, 3, t)  # (B*S, 3, T)
        if sensor_mask is None or bool(sensor_mask.all()):
            return self.backbone(flat).view(b, s, -1)  # (B, S, D)
        idx = sensor_mask.reshape(-1).nonzero().squeeze(1)  # (n_present,)
        feats = self.backbone(flat[idx])  # (n_present, D)
        out = feats.new_zeros(b * s, feats.shape[1]).index_copy(0, idx, feats)  # (B*S, D)
        return out.view(b, s, -1)

    def _context(self, context: torch.Tensor, b: int, s: int) -> torch.Tensor:
        """Projected, normalised sensor context `(B, S, E)` from `(S, d_text)` or `(B, S, d_text)`."""
        context = torch.as_tensor(context)
        shape = tuple(context.shape)
        if context.ndim == 2:
            context = context.unsqueeze(0)  # (1, S, d_text)
        if context.ndim != 3 or context.shape[1] != s or context.shape[0] not in (1, b):
            raise ZeroharError(f"sensor context has shape {shape}, expected ({s}, {self.cfg.d_text}) or "
                               f"({b}, {s}, {self.cfg.d_text}) for {s} sensors")
        return self.encode_text(context, normalize=True).expand(b, s, -1)  # (B, S, E)

    # ------------------------------------------------------------------------------------------ encoders
    def encode_text(self, t: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Project sentence embeddings `(..., d_text)` (tensor or numpy array) with R -> `(..., E)`."""
        t = torch.as_tensor(t)  # numpy arrays from the text encoder are welcome
        if t.shape[-1] != self.cfg.d_text:
            raise ZeroharError(f"text embeddings have dimension {t.shape[-1]}, but the model was built for "
                               f"{self.cfg.d_text} (another text encoder?)")
        w = next(self.text_proj.parameters())
        z = self.text_proj(t.to(device=w.device, dtype=w.dtype))  # (..., E)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_channels(
        self, x: torch.Tensor, normalize: bool = True, *, kinds: KindsLike = None,
        sensor_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Stage I: channel embeddings of windows.

        Args:
            x: `(B, C, T)` windows, channels in canonical order (sensor by sensor, x y z).
            normalize: L2-normalise the embeddings.
            kinds: sensor kinds, see the module docstring.
            sensor_mask: `(B, S)` bool, True where the sensor is present; absent sensors give zero vectors.

        Returns:
            `(B, C, E)`.
        """
        triads = self._triads(x, kinds)  # (B, S, 3, T)
        b, s = triads.shape[:2]
        if self.cfg.encoder == "original":
            z = self.original.encode_channels(triads.reshape(b, 3 * s, -1))  # (B, C, E)
        else:
            feats = self.triad_features(triads, self._check_mask(sensor_mask, b, s))  # (B, S, D)
            z = self.channel_head(feats).view(b, 3 * s, -1)  # (B, C, E)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_windows(
        self, x: torch.Tensor, context: torch.Tensor, sensor_mask: torch.Tensor | None = None,
        normalize: bool = True, *, kinds: KindsLike = None,
    ) -> torch.Tensor:
        """Stage II: window embeddings.

        Args:
            x: `(B, C, T)` windows, C = 3 S.
            context: sentence embeddings of the sensor descriptions, `(S, d_text)` shared by the batch or
                `(B, S, d_text)` per window.
            sensor_mask: `(B, S)` bool, True where the sensor is present (padded sensors are False), or None.
            normalize: L2-normalise the embeddings.
            kinds: sensor kinds, see the module docstring.

        Returns:
            `(B, E)`.
        """
        triads = self._triads(x, kinds)  # (B, S, 3, T)
        b, s = triads.shape[:2]
        mask = self._check_mask(sensor_mask, b, s)
        ctx = self._context(context, b, s)  # (B, S, E)
        if self.cfg.encoder == "original":
            z = self.original.encode_windows(triads, ctx, mask)  # (B, E)
        else:
            tok = self.sensor_proj(self.triad_features(triads, mask))  # (B, S, d_model)
            if self.context_proj is not None:
                c = self.context_proj(ctx).to(tok.dtype)  # (B, S, d_model)
                tok = self.merge(torch.cat([tok, c], dim=-1)) if self.merge is not None else tok + c
            h = self.sensor_encoder(tok, src_key_padding_mask=None if mask is None else ~mask)  # (B, S, d_model)
            z = self.window_proj(self.out_norm(_masked_mean(h, mask)))  # (B, E)
        return F.normalize(z, dim=-1) if normalize else z

    def label_prototypes(self, desc: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Label prototypes: normalised mean of the normalised projected descriptions.

        Args:
            desc: `(L, K, d_text)` sentence embeddings of K descriptions per label (tensor or numpy array).
            mask: `(L, K)` bool, True for real descriptions when labels have fewer than K (padding False).

        Returns:
            `(L, E)`, L2-normalised.
        """
        z = self.encode_text(desc, normalize=True)  # (L, K, E)
        return label_prototypes(z, mask)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, sensor_mask: torch.Tensor | None = None,
        normalize: bool = True, *, kinds: KindsLike = None, task: str = "windows",
    ) -> torch.Tensor:
        """`encode_windows` (task="windows") or `encode_channels` (task="channels").

        Training under DistributedDataParallel must go through `forward`; Stage I leaves the sensor
        transformer unused, so wrap with `find_unused_parameters=True` there.
        """
        if task == "channels":
            return self.encode_channels(x, normalize, kinds=kinds, sensor_mask=sensor_mask)
        if task != "windows":
            raise ValueError(f"task must be 'windows' or 'channels', not {task!r}")
        if context is None:
            raise ValueError("encode_windows needs the sensor context")
        return self.encode_windows(x, context, sensor_mask, normalize, kinds=kinds)

    # ------------------------------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> Path:
        """Write `model.safetensors` and `model.json` (config, identity hash, `extra`) into `directory`.

        Both are written atomically; the JSON last, so a directory with a `model.json` has its weights.
        Existing files are replaced (a training run saves every epoch; commands guard with `--force`).

        Returns:
            The directory.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        weights = atomic_write(
            directory / "model.safetensors",
            lambda tmp: save_file(state, tmp, metadata={"format": MODEL_FORMAT}),
        )
        meta = {
            "format": MODEL_FORMAT,
            "architecture": self.cfg.describe(),
            "config": self.cfg.to_dict(),
            "identity": file_identity(weights),
            "n_parameters": self.n_parameters,
            "extra": extra or {},
        }
        text = json.dumps(meta, indent=2, sort_keys=False, default=str)
        atomic_write(directory / "model.json", lambda tmp: Path(tmp).write_text(text + "\n"))
        self.metadata = meta
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: ModelConfig | None = None) -> ZeroHARModel:
        """Load a model written by :meth:`save_pretrained`, in eval mode; `model.metadata` holds `model.json`.

        Args:
            directory: the run (or release) directory.
            config: if given, the checkpoint's architecture must equal its architecture (else a ZeroharError
                naming both); its other settings (dropout, clipping, ...) replace the saved ones.

        Raises:
            ZeroharError: missing, corrupt or inconsistent files, or another architecture.
        """
        directory = Path(directory)
        meta_path, weights = directory / "model.json", directory / "model.safetensors"
        for p in (meta_path, weights):
            if not p.is_file():
                raise ZeroharError(f"{p} does not exist: expected a zerohar model directory (model.json + "
                                   "model.safetensors)")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ZeroharError(f"{meta_path} is not valid JSON ({e.__class__.__name__}); the file is corrupt"
                               ) from None
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if fmt != MODEL_FORMAT:
            arch = meta.get("architecture", "unknown architecture") if isinstance(meta, dict) else "?"
            raise ZeroharError(f"{meta_path} describes a {fmt or 'non-zerohar'} checkpoint ({arch}), "
                               f"not a zerohar model ({MODEL_FORMAT})")
        saved = ModelConfig.from_dict(meta.get("config"), f"{meta_path} 'config'")
        if config is not None and config.architecture() != saved.architecture():
            diff = [k for k in ARCH_FIELDS if getattr(config, k) != getattr(saved, k)]
            raise ZeroharError(
                f"{directory} holds a {saved.describe()} model, but the config asks for a {config.describe()} "
                f"model (they differ in {', '.join(diff)})"
            )
        cfg = config or saved
        if meta.get("identity") and file_identity(weights) != meta["identity"]:
            raise ZeroharError(f"{weights} does not match the identity in {meta_path} (the file was modified or "
                               "partially written)")
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights), device="cpu")
        except Exception as e:  # noqa: BLE001 - SafetensorError / OSError for a damaged file
            raise ZeroharError(f"{weights} is not a readable safetensors file (corrupt or truncated: "
                               f"{e.__class__.__name__})") from None
        model = cls(cfg)
        mismatch = first_mismatch(model.state_dict(), state)
        if mismatch:
            raise ZeroharError(f"{weights} holds weights of another architecture than {saved.describe()} "
                               f"described in {meta_path} (first differing tensor: {mismatch})")
        model.load_state_dict(state)
        model.metadata = meta
        log.info("loaded %s from %s (identity %s)", cfg.describe(), directory, meta.get("identity"))
        return model.eval()


def file_identity(path: str | Path) -> str:
    """`sha256:<first 16 hex digits>` of a file's bytes: names a model's exact weights."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]
