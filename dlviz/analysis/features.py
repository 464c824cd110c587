"""What a model computes for one input: model inputs from images, noise or the dataset, every layer's output via forward hooks, and its filters."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from torch import nn

from dlviz import limits as _limits
from dlviz.errors import UserError, clip
from dlviz.model import budget
from dlviz.model.build import Network, build_model, device_of
from dlviz.preset.registry import shape_str
from dlviz.preset.schema import Experiment
from dlviz.runtime import Recurrent, SelfAttention, SelfBilinear
from dlviz.training.telemetry import capture_outputs

# Hooks live on the module objects, so two threads running one shared model would see each other's outputs;
# every hooked pass holds this lock (inspection passes take milliseconds).
HOOK_LOCK = threading.Lock()

SCALES = ("per map", "per layer", "global")  # colour-scale modes, as in CNN Explainer

# name shown -> (package, loader name); all ship inside the installed packages, nothing is downloaded
SAMPLE_IMAGES = {
    "camera (scikit-image)": ("skimage", "camera"),
    "astronaut (scikit-image)": ("skimage", "astronaut"),
    "coins (scikit-image)": ("skimage", "coins"),
    "chelsea the cat (scikit-image)": ("skimage", "chelsea"),
    "coffee (scikit-image)": ("skimage", "coffee"),
    "checkerboard (scikit-image)": ("skimage", "checkerboard"),
    "text (scikit-image)": ("skimage", "text"),
    "china (scikit-learn)": ("sklearn", "china.jpg"),
    "flower (scikit-learn)": ("sklearn", "flower.jpg"),
}

# Pillow's decoders that run inside this process, named explicitly (Pillow would otherwise try every plugin it has,
# EPS among them, which runs Ghostscript); the uploader offers the matching extensions
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp")
MAX_PICTURE_SIDE = 1024  # an upload is shrunk to this many pixels on its longest side: ~4 MB grey, ~12 MB colour as float32

# ITU-R 601 luma weights, the ones Pillow's convert("L") uses
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# ---------------------------------------------------------------- pictures


@dataclass
class Picture:
    """An image at its own resolution: float32 pixels in [0, 1], H×W (grey) or H×W×3 (colour)."""

    pixels: np.ndarray
    source: str
    note: str = ""

    @property
    def grey(self) -> bool:
        return self.pixels.ndim == 2


def _as_picture(arr: np.ndarray, source: str, note: str = "") -> Picture:
    """uint8, bool or float pixels as a Picture; an RGB image whose channels are all equal becomes grey."""
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float32) / 255.0
    else:
        arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[2] == 4:  # alpha: composite onto white, as a viewer shows it
        alpha = arr[..., 3:]
        arr = arr[..., :3] * alpha + (1 - alpha)
        note = _join(note, "transparent areas shown on white")
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        arr = arr[..., 0]
    return Picture(np.ascontiguousarray(np.clip(arr, 0, 1)), source, note)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


@lru_cache(maxsize=16)
def _sample_pixels(name: str) -> Picture:
    package, what = SAMPLE_IMAGES[name]
    if package == "skimage":
        import skimage.data

        arr = getattr(skimage.data, what)()
    else:
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(what)
    pic = _as_picture(arr, name)
    pic.pixels.flags.writeable = False  # shared by every caller of the cache
    return pic


def sample_image(name: str) -> Picture:
    """One of the sample images scikit-image and scikit-learn ship."""
    if name not in SAMPLE_IMAGES:
        raise UserError("inspect.image", f"no sample image named '{name}'; choose one of {', '.join(SAMPLE_IMAGES)}")
    return _sample_pixels(name)


def decode_image(data: bytes, name: str = "the upload") -> Picture:
    """An uploaded file as a Picture at most MAX_PICTURE_SIDE pixels on its longest side; anything that is not a readable
    PNG, JPEG, GIF, BMP, TIFF or WebP image of a sensible size is a UserError."""
    from PIL import Image

    lim = _limits.current()
    name = clip(name)
    if len(data) > lim.max_upload_bytes:
        raise UserError(
            "inspect.upload",
            f"{name} is {len(data) / 1e6:.1f} MB, over the upload limit of {lim.max_upload_bytes / 1e6:g} MB (DLVIZ_MAX_UPLOAD_BYTES); upload a smaller image",
        )
    unreadable = UserError("inspect.upload", f"{name} is not an image that can be read; upload a PNG, JPEG, GIF, BMP, TIFF or WebP file")
    try:
        # only decoders that run inside this process are asked: EPS and PDF would start Ghostscript on the server
        im = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        w, h = im.size  # from the header: nothing is decompressed yet
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError("inspect.upload", f"{name} has too many pixels to open (over {lim.max_image_pixels:,}); upload a smaller image") from None
    except Exception:  # a decoder of anyone's bytes may fail in any way; each means the same to the person
        raise unreadable from None
    if w * h > lim.max_image_pixels:
        raise UserError(
            "inspect.upload",
            f"{name} is {w:,}×{h:,} = {w * h:,} pixels, over the limit of {lim.max_image_pixels:,} (DLVIZ_MAX_IMAGE_PIXELS); upload a smaller image",
        )
    if w < 1 or h < 1:
        raise UserError("inspect.upload", f"{name} is an empty image; upload one with pixels")
    try:
        note = "the first frame of an animation" if getattr(im, "is_animated", False) else ""
        im.seek(0)
        im.draft(None, (MAX_PICTURE_SIDE, MAX_PICTURE_SIDE))  # a JPEG decodes straight at a fraction of its size
        im.load()
        mode = im.mode
        if mode in ("I", "F") or mode.startswith("I;"):
            # 16-bit and float images have no fixed white: their own range becomes [0, 1] (after shrinking, which
            # averages and so keeps the range)
            im = im.convert("F")
        elif "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
        elif im.mode in ("1", "L"):
            im = im.convert("L")
        else:
            im = im.convert("RGB")  # palette, CMYK, YCbCr, LAB, HSV
        # shrunk in Pillow's own pixels, before any float copy: a 5,000×5,000 upload would be 300 MB of float32
        im.thumbnail((MAX_PICTURE_SIDE, MAX_PICTURE_SIDE), Image.Resampling.LANCZOS)
        if im.size != (w, h):
            note = _join(note, f"shrunk from {w:,}×{h:,} to {im.size[0]:,}×{im.size[1]:,} pixels (at most {MAX_PICTURE_SIDE:,} on the longest side)")
        arr = np.asarray(im)
        if im.mode == "F":
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            note = _join(note, f"{mode} pixels scaled from their range [{lo:g}, {hi:g}] to [0, 1]")
    except Exception:
        raise UserError("inspect.upload", f"{name} is damaged or truncated and cannot be decoded; upload the image again or another one") from None
    return _as_picture(arr, name, note)


class PictureCache:
    """Decoded uploads of one session, newest kept, within a byte budget: a rerun reuses a picture instead of decoding
    the file again, and no session holds more than its share of the server's memory."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self._items: dict[str, Picture | UserError] = {}

    @property
    def nbytes(self) -> int:
        return sum(p.pixels.nbytes for p in self._items.values() if isinstance(p, Picture))

    def get(self, data: bytes, name: str) -> Picture:
        """The upload `data` decoded (see decode_image); a refused file raises its UserError again, without decoding."""
        import hashlib

        key = hashlib.sha256(data).hexdigest() + "|" + name
        if key in self._items:
            self._items[key] = self._items.pop(key)  # now the newest
        else:
            try:
                self._items[key] = decode_image(data, name)
            except UserError as err:
                self._items[key] = err
            while len(self._items) > 1 and self.nbytes > self.limit_bytes:
                del self._items[next(iter(self._items))]
        item = self._items[key]
        if isinstance(item, UserError):
            raise item
        return item


# ---------------------------------------------------------------- model inputs


@dataclass
class ModelInput:
    """One input sample ready for the model: `x` has a batch dimension of 1; `pixels` is what to show for it
    (H×W or H×W×3 in [0, 1] at the model's resolution, None for inputs that are not images)."""

    x: torch.Tensor
    pixels: Optional[np.ndarray]
    source: str
    note: str = ""
    label: Optional[str] = None


def _resize(pixels: np.ndarray, h: int, w: int) -> np.ndarray:
    """Centre-crop to the aspect ratio h:w, then resample to h×w (antialiased bilinear) channel by channel."""
    from PIL import Image

    ph, pw = pixels.shape[:2]
    if ph * w > pw * h:  # too tall
        keep = max(1, round(pw * h / w))
        top = (ph - keep) // 2
        pixels = pixels[top : top + keep]
    elif ph * w < pw * h:  # too wide
        keep = max(1, round(ph * w / h))
        left = (pw - keep) // 2
        pixels = pixels[:, left : left + keep]
    if pixels.shape[:2] == (h, w):
        return pixels.astype(np.float32)
    chans = pixels[..., None] if pixels.ndim == 2 else pixels
    out = [
        np.asarray(Image.fromarray(np.ascontiguousarray(chans[..., c], dtype=np.float32), mode="F").resize((w, h), Image.Resampling.BILINEAR))
        for c in range(chans.shape[2])
    ]
    out = np.clip(np.stack(out, axis=-1), 0, 1)
    return out[..., 0] if pixels.ndim == 2 else out


def grey_pixels(picture: Picture, size: Optional[int] = None) -> np.ndarray:
    """A picture as grey pixels (luminance), centre-cropped to a square and resized to size×size when `size` is given."""
    pixels = picture.pixels if size is None else _resize(picture.pixels, size, size)
    return np.ascontiguousarray(pixels if pixels.ndim == 2 else pixels @ LUMA, dtype=np.float32)


def image_input(picture: Picture, input_shape, normalization: Optional[tuple[float, float]] = None, data_name: str = "") -> ModelInput:
    """A picture fitted to a [channels, height, width] input: cropped and resized, its colours converted to the
    model's channels, and normalized like the preset's image data. The note says what was done."""
    if len(input_shape) != 3:
        raise UserError(
            "model.input_shape",
            f"an image needs a model input of [channels, height, width], but this model takes {shape_str(input_shape)}; use a dataset sample or random noise",
        )
    c, h, w = (int(n) for n in input_shape)
    notes = []
    ph, pw = picture.pixels.shape[:2]
    pixels = _resize(picture.pixels, h, w)
    if (ph, pw) != (h, w):
        cropped = " centre-cropped and" if ph * w != pw * h else ""
        notes.append(f"{pw}×{ph} image{cropped} resized to {w}×{h}")
    grey_in = pixels.ndim == 2
    if c == 3:
        if grey_in:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
            notes.append("greyscale copied into the 3 colour channels")
        chans = pixels.transpose(2, 0, 1)
        shown = pixels
    else:
        if not grey_in:
            pixels = pixels @ LUMA
            notes.append("colour converted to greyscale (luminance)")
        chans = np.repeat(pixels[None], c, axis=0)
        if c != 1:
            notes.append(f"greyscale copied into all {c} input channels")
        shown = pixels
    x = torch.from_numpy(np.ascontiguousarray(chans, dtype=np.float32))
    if normalization is not None:
        mean, std = normalization
        x = (x - mean) / std
        notes.append(f"normalized like the {data_name or 'training'} images (mean {mean:g}, std {std:g})")
    else:
        notes.append("pixels in [0, 1]")
    return ModelInput(x[None], np.ascontiguousarray(shown, dtype=np.float32), picture.source, _join(picture.note, *notes))


def noise_input(net: Network, seed: int = 0) -> ModelInput:
    """Standard normal noise of the model's input shape (random token ids for a model that starts with an Embedding)."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, *net.input_shape)
    if net.input_dtype == torch.long:
        vocab = next(m.num_embeddings for m in net.modules() if isinstance(m, nn.Embedding))
        x = torch.randint(0, vocab, shape, generator=g)
        return ModelInput(x, None, f"random tokens (seed {seed})", f"token ids drawn uniformly from 0 to {vocab - 1}")
    x = torch.randn(shape, generator=g)
    return ModelInput(x, display_pixels(x[0]), f"random noise (seed {seed})", "N(0, 1) in every input element")


def display_pixels(x: torch.Tensor) -> Optional[np.ndarray]:
    """One image input (C, H, W) as pixels to show: grey for 1 channel, RGB for 3, else the channel mean; min-max scaled."""
    if x.dim() != 3 or not x.is_floating_point():
        return None
    a = x.detach().float().numpy()
    a = a.transpose(1, 2, 0) if a.shape[0] == 3 else a.mean(0)
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.float32)


def dataset_input(exp: Experiment, dataset, index: int) -> ModelInput:
    """Validation sample `index` of the preset's dataset (the dataset as data.load_dataset gave it)."""
    n = len(dataset.x_val)
    if n == 0:
        raise UserError("data.val_fraction", "the dataset has no validation samples to show; set val_fraction above 0")
    if not 0 <= index < n:
        raise UserError("inspect.sample", f"sample {index} does not exist: the validation set has {n:,} samples (0 to {n - 1:,})")
    x = dataset.x_val[index : index + 1]
    y = dataset.y_val[index]
    label = None
    if y.dim() == 0:
        value = int(y) if dataset.task == "classification" else float(y)
        label = dataset.class_names[value] if dataset.class_names and dataset.task == "classification" else f"{value:g}"
    pixels = None
    if dataset.normalization is not None:
        p = dataset.pixels(x[0]).clamp(0, 1).numpy()
        pixels = p[0] if p.shape[0] == 1 else p.transpose(1, 2, 0)
    elif x.dim() == 4:
        pixels = display_pixels(x[0])
    return ModelInput(x, pixels, f"{exp.data.name} validation sample {index}", dataset.note, label)


# ---------------------------------------------------------------- models


def load_model(exp: Experiment, state: Optional[dict] = None, device: Optional[str] = None) -> Network:
    """The preset's model for inspection: its initial weights (the preset's seed), or a checkpoint's weights; in
    eval mode, parameters frozen (inspection never trains; gradients flow only to inputs). On `device`, by default
    DLVIZ_DEVICE's: the computations on it take inputs on the CPU and give their results there."""
    net = build_model(exp, seed=exp.seed)
    if state is not None:
        weights = state.get("model", state)
        try:
            net.load_state_dict(weights)
        except RuntimeError:
            raise UserError("inspect.checkpoint", "the checkpoint's weights do not fit this preset's model; pick the run's own preset") from None
    net.eval()
    net.requires_grad_(False)
    return net.to(device or _limits.device())


# ---------------------------------------------------------------- feature maps


@dataclass
class LayerOutput:
    """One layer's output for one sample (no batch dimension), named by its module and its preset path."""

    name: str
    path: str
    type: str
    values: np.ndarray

    @property
    def kind(self) -> str:
        """'maps' for [channels, height, width], 'rows' for [channels, length] or [time, features], 'vector' for [features]."""
        return {3: "maps", 2: "rows", 1: "vector"}.get(self.values.ndim, "other")


def type_name(mod: nn.Module) -> str:
    """The preset's type name for a module dlviz built."""
    if isinstance(mod, Recurrent):
        return type(mod.rnn).__name__
    if isinstance(mod, SelfAttention):
        return "MultiheadAttention"
    if isinstance(mod, SelfBilinear):
        return "Bilinear"
    if isinstance(mod, nn.Sequential):
        return "Sequential"
    return type(mod).__name__


def feature_maps(net: Network, x: torch.Tensor) -> list[LayerOutput]:
    """Every layer's output for the first sample of `x`, in the order the forward pass finishes them (a block after
    its children). Hooks are added for this one pass and removed before returning, even when the pass fails."""
    budget.check("The feature maps of this model", budget.feature_maps_bytes(net.footprint, len(x)), budget.SMALLER_MODEL)
    modules = {name: net.get_submodule(name) for name in net.json_paths}
    with HOOK_LOCK, torch.no_grad(), capture_outputs(modules) as seen:
        net(x.to(device_of(net)))
    out = []
    for name, y in seen.items():
        if torch.is_tensor(y):
            # a copy: an Identity or in-place layer hands out its input's storage, which the caller may not change
            out.append(LayerOutput(name, net.json_paths[name], type_name(modules[name]), y[0].float().cpu().numpy().copy()))
    return out


def has_maps(outputs: list[LayerOutput]) -> bool:
    return any(o.kind == "maps" for o in outputs)


def color_range(outputs: list[LayerOutput], index: int, channel: int, mode: str) -> tuple[float, float]:
    """The symmetric colour range ±m for one map: m = max |value| over the map, its layer, or every map-shaped layer."""
    if mode == "per map":
        m = float(np.abs(outputs[index].values[channel]).max())
    elif mode == "per layer":
        m = float(np.abs(outputs[index].values).max())
    elif mode == "global":
        pool = [o.values for o in outputs if o.kind == outputs[index].kind] or [outputs[index].values]
        m = max(float(np.abs(v).max()) for v in pool)
    else:
        raise ValueError(f"colour scale mode must be one of {SCALES}, not {mode!r}")
    m = m if m > 0 else 1.0
    return -m, m


# ---------------------------------------------------------------- filters


@dataclass
class Filters:
    """One convolution's kernels: weight (out, in, kh, kw) and its preset path."""

    path: str
    weight: np.ndarray

    @property
    def rgb(self) -> bool:
        return self.weight.shape[1] == 3


def conv_filters(net: Network) -> list[Filters]:
    """The kernels of every 2-D convolution, in preset order."""
    return [
        Filters(net.json_paths[name], mod.weight.detach().float().cpu().numpy().copy())
        for name, mod in net.named_modules()
        if isinstance(mod, nn.Conv2d) and name in net.json_paths
    ]


def rgb_filters(weight: np.ndarray) -> np.ndarray:
    """First-layer kernels (out, 3, kh, kw) as images (out, kh, kw, 3): each scaled to [0, 1] around a grey zero, by
    its own largest |weight|, so that a kernel's colour and sign show rather than its scale."""
    w = weight.transpose(0, 2, 3, 1).astype(np.float32)
    m = np.abs(w).reshape(len(w), -1).max(1)
    m[m == 0] = 1
    return 0.5 + 0.5 * w / m[:, None, None, None]
