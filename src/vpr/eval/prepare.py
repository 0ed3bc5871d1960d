"""How an image becomes the network's input at test time: one policy for extraction, training-time validation
and ``vpr.localize`` (``extract.resize`` in params.yaml), so the three always see the same pixels.

* ``stretch``: resize to ``image_size`` (H, W) whatever the aspect ratio (distorts other shapes);
* ``keep_aspect``: scale so the shorter side equals the shorter side of ``image_size`` (``side: shorter``,
  as CosPlace's ``--resize_test_imgs``), or the longer side the longer one (``side: longer``); the aspect
  ratio is kept, so images of different shapes come out at different sizes and are batched by size;
* ``cover_crop``: scale to cover ``image_size`` and crop its centre (no distortion, loses the overflow).

``image_size: null`` keeps every image at its native size (the reference code's one-at-a-time queries).
Images of equal output size are batched together; a batch never mixes sizes (no padding).
"""

from __future__ import annotations

from dataclasses import dataclass

from vpr.errors import require

POLICIES = ("stretch", "keep_aspect", "cover_crop")
SIDES = ("shorter", "longer")


@dataclass(frozen=True)
class ImagePrep:
    size: tuple | None = None  # (H, W); None = native size
    policy: str = "stretch"
    side: str = "shorter"  # keep_aspect only
    scale: float = 1.0  # multi-scale testing: every output side times this factor

    def __post_init__(self):
        require(
            self.policy in POLICIES,
            "extract.resize",
            f"'{self.policy}' is not one of: {', '.join(POLICIES)}",
        )
        require(
            self.side in SIDES,
            "extract.resize_side",
            f"'{self.side}' is not one of: {', '.join(SIDES)}",
        )
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(v) for v in self.size))

    @classmethod
    def of(cls, prep) -> ImagePrep:
        """An ImagePrep as is; a (H, W) size or None: plain stretching to it (or native size)."""
        return prep if isinstance(prep, ImagePrep) else cls(None if prep is None else tuple(prep))

    @classmethod
    def from_dict(cls, d: dict | None, default_size=None) -> ImagePrep:
        d = d or {}
        size = d.get("size", default_size)
        return cls(
            None if size is None else tuple(size),
            d.get("policy", "stretch"),
            d.get("side", "shorter"),
        )

    def to_dict(self) -> dict:
        return dict(size=list(self.size) if self.size else None, policy=self.policy, side=self.side)

    def at_scale(self, factor: float) -> ImagePrep:
        """The same policy with every output side times ``factor`` (each scale of multi-scale testing prepares
        the decoded image anew, so scales above 1 see real detail, not an upsampled small image)."""
        return ImagePrep(self.size, self.policy, self.side, self.scale * factor)

    def _scaled(self, h: int, w: int) -> tuple[int, int]:
        if self.scale == 1.0:
            return h, w
        return max(16, round(h * self.scale)), max(16, round(w * self.scale))

    @property
    def fixed_size(self) -> bool:
        """Every image comes out at ``size`` (what fixed-grid aggregators such as MixVPR need)."""
        return self.size is not None and self.policy in ("stretch", "cover_crop")

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) an image of ``height`` x ``width`` is resized to, before any crop."""
        if self.size is None:
            return self._scaled(height, width)
        th, tw = self._scaled(*self.size)
        if self.policy == "stretch":
            return th, tw
        if self.policy == "cover_crop":
            scale = max(th / height, tw / width)
            return max(th, round(height * scale)), max(tw, round(width * scale))
        scale = (
            min(th, tw) / min(height, width)
            if self.side == "shorter"
            else max(th, tw) / max(height, width)
        )
        return max(1, round(height * scale)), max(1, round(width * scale))

    def output(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the network input made from an image of ``height`` x ``width``."""
        return self._scaled(*self.size) if self.fixed_size else self.resized(height, width)

    def __call__(self, image, source_size=None):
        """A decoded, EXIF-rotated image (PIL, or a uint8 tensor (3, H, W)) -> uint8 tensor (3, H, W) of
        ``output(*source_size)`` size. ``source_size``: the image's (H, W) as its file header gives it (after
        EXIF rotation), when the decoder reduced it (JPEG draft mode): the output size is computed from the
        header's size, as ``size_batches`` computes it, never from the reduced one (whose rounding differs)."""
        from torchvision.transforms import v2

        tensor = v2.functional.to_image(image)
        height, width = tensor.shape[-2:]
        h, w = self.resized(*(source_size or (height, width)))
        if (h, w) != (height, width):
            tensor = v2.functional.resize(tensor, [h, w], antialias=True)
        if self.policy == "cover_crop" and self.size is not None:
            tensor = v2.functional.center_crop(tensor, list(self._scaled(*self.size)))
        return tensor


def oriented_size(path: str) -> tuple[int, int]:
    """(height, width) of an image after its EXIF rotation, read from the header only (no decoding)."""
    from PIL import Image, UnidentifiedImageError

    from vpr.errors import DataError

    try:
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read image header ({exc.__class__.__name__}: {exc}); "
            f"delete or re-download the file"
        ) from None
    return h, w


def size_batches(paths, prep: ImagePrep, batch_size: int) -> list[list[int]]:
    """Index batches of at most ``batch_size`` images with the same output size, in path order within a size.
    One bucket (no header reads) when the policy gives every image the same size."""
    if prep.fixed_size:
        return [
            list(range(i, min(i + batch_size, len(paths))))
            for i in range(0, len(paths), batch_size)
        ]
    buckets: dict[tuple, list[int]] = {}
    for i, p in enumerate(paths):
        buckets.setdefault(prep.output(*oriented_size(str(p))), []).append(i)
    batches = [
        idx[i : i + batch_size] for idx in buckets.values() for i in range(0, len(idx), batch_size)
    ]
    return sorted(batches, key=lambda b: b[0])


def prep_of(extract: dict, size) -> ImagePrep:
    """The policy of the ``extract`` params section (resize, resize_side) at ``size`` (H, W; None: native):
    extract.image_size for extraction, the training size for validation."""
    return ImagePrep(
        None if size is None else tuple(size), extract["resize"], extract["resize_side"]
    )
