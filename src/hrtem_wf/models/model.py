"""The segmentation network, built from a declarative models block (smp architecture and encoder
names); the study's UNet with a ResNet18 encoder of 3 stages is the default. `TrainedModel` is
a trained model directory (metadata, weights) as evaluation, scoring, report and predict read it."""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch

#: Two output classes: 0 = background (substrate and vacuum), 1 = particle.
N_CLASSES = 2


def architectures() -> list[str]:
    """smp's architecture names (Unet, UnetPlusPlus, FPN, DeepLabV3Plus, ...)."""
    return sorted(cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values())


def takes_decoder_channels(architecture: str) -> bool:
    """Whether the smp architecture has a per-stage `decoder_channels` list (Unet-like)."""
    parameter = inspect.signature(getattr(smp, architecture).__init__).parameters.get(
        "decoder_channels"
    )
    return parameter is not None and isinstance(parameter.default, tuple | list)


def build_model(
    block: dict, in_channels: int = 1, out_channels: int = N_CLASSES
) -> torch.nn.Module:
    """An untrained network from a validated models block (hrtem_wf.config): `in_channels`
    images in (the micrograph, or a focal series), `out_channels` maps out per pixel (2 logits for
    particle masks; a column or exit-wave task's target channels). `architecture` is MSDNet
    (options: depth, width, dilations) or an smp name with an smp `encoder`; `options` passes
    further smp keywords (e.g. decoder_attention_type: scse)."""
    architecture = block["architecture"]
    if architecture == "MSDNet":
        from .msdnet import MSDNet

        return MSDNet(in_channels, out_channels, **block["options"])
    encoder_depth = int(block["encoder_depth"])
    kwargs = dict(block["options"])
    if takes_decoder_channels(architecture):
        kwargs["decoder_channels"] = [int(c) for c in block["decoder_channels"]]
    model = smp.create_model(
        architecture,
        encoder_name=str(block["encoder"]),
        encoder_depth=encoder_depth,
        encoder_weights=None,  # trained from scratch on simulations, as in the paper
        in_channels=in_channels,
        classes=out_channels,
        **kwargs,
    )
    _check_output_shape(model, architecture, encoder_depth, in_channels, out_channels)
    return model


def _check_output_shape(
    model: torch.nn.Module,
    architecture: str,
    encoder_depth: int,
    in_channels: int = 1,
    out_channels: int = N_CLASSES,
) -> None:
    """A segmentation map the size of the input, or a clear error (smp's FPN upsamples x4 at
    any encoder depth, for one)."""
    size = 2**encoder_depth * 8
    model.eval()
    with torch.no_grad():
        shape = tuple(model(torch.zeros(1, in_channels, size, size)).shape)
    model.train()
    if shape != (1, out_channels, size, size):
        raise ValueError(
            f"{architecture} with encoder_depth {encoder_depth} maps a {size} x {size} "
            f"input to {shape[-2]} x {shape[-1]}; set its upsampling in `options`"
        )


def check_image_shape(image_shape: Sequence[int], encoder_depth: int, architecture="Unet") -> None:
    """Raise ValueError unless height and width survive ``encoder_depth`` halvings exactly (an
    MSDNet takes any size)."""
    if architecture == "MSDNet":
        return
    factor = 2 ** int(encoder_depth)
    height, width = (int(n) for n in image_shape[-2:])
    if height % factor or width % factor:
        raise ValueError(
            f"image size {height} x {width} px is not divisible by 2**encoder_depth = {factor}; "
            f"crop the images to a multiple of {factor} px or lower encoder_depth"
        )


def resolve_device(device: str) -> torch.device:
    """The torch device for the config value 'cpu' or 'gpu' (CUDA)."""
    if device == "cpu":
        return torch.device("cpu")
    if device == "gpu":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "the model block asks for device: gpu, but torch finds no CUDA device here; "
                "run on a GPU node or set device: cpu"
            )
        return torch.device("cuda")
    raise ValueError(f"device must be 'cpu' or 'gpu', not {device!r}")


def count_parameters(model: torch.nn.Module) -> int:
    """All parameters in the state (smp keeps encoder stages beyond encoder_depth unused)."""
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class TrainedModel:
    """A trained model directory, results/models/<N>/seed<k>/: metadata.json as training wrote it
    (last, so its presence marks a complete directory), weights.pt and history.csv."""

    path: Path
    metadata: dict

    #: What training always writes and this object reads.
    REQUIRED_KEYS = ("model", "seed", "block", "dataset", "pixel_size_A", "best_epoch")

    @classmethod
    def read(cls, model_dir: str | Path) -> TrainedModel:
        """The model in ``model_dir``; FileNotFoundError or ValueError naming the file unless its
        metadata.json and weights.pt are there and the metadata has every key training writes."""
        path = Path(model_dir)
        metadata_path = path / "metadata.json"
        if not metadata_path.is_file():
            raise FileNotFoundError(
                f"{metadata_path}: no such file; training writes it last, so "
                f"{path} holds no finished training"
            )
        try:
            metadata = json.loads(metadata_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{metadata_path}: not valid JSON ({error})") from None
        if not isinstance(metadata, dict):
            raise ValueError(f"{metadata_path}: holds a {type(metadata).__name__}, not an object")
        missing = [key for key in cls.REQUIRED_KEYS if key not in metadata]
        if missing:
            raise ValueError(f"{metadata_path}: lacks {missing}; it is not one training wrote")
        trained = cls(path, metadata)
        if not trained.weights_path.is_file():
            raise FileNotFoundError(f"{trained.weights_path}: no such file (the model's weights)")
        return trained

    @property
    def name(self) -> str:
        """The models block's name, N of results/models/<N>/."""
        return self.metadata["model"]

    @property
    def seed(self) -> int:
        return self.metadata["seed"]

    @property
    def block(self) -> dict:
        """The models block it was trained with (validated: every default filled)."""
        return self.metadata["block"]

    @property
    def dataset(self) -> str | None:
        """The training dataset's name (the block's `dataset`)."""
        return self.metadata["dataset"]

    @property
    def task(self) -> str:
        """segmentation, columns or exit_wave (models trained before tasks: segmentation)."""
        return self.block.get("task", "segmentation")

    @property
    def channels(self) -> tuple[int, int]:
        """(input images, output maps) of the network (before focal series: 1 and 2)."""
        return int(self.metadata.get("in_channels", 1)), int(
            self.metadata.get("out_channels", N_CLASSES)
        )

    @property
    def best_epoch(self) -> int:
        """The epoch whose weights weights.pt holds."""
        return self.metadata["best_epoch"]

    @property
    def pixel_size_A(self) -> float | list[float] | None:
        """The training images' pixel size in Angstrom: a number, or [low, high] when it varied
        (a number when low == high); None when the images recorded none. Micrographs within it
        (and a 5 % tolerance) pass as they are; see `nominal_pixel_size_A` for the others."""
        value = self.metadata["pixel_size_A"]
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            values = [float(v) for v in value]
            if not values:
                return None
            low, high = min(values), max(values)
            return low if low == high else [low, high]
        return float(value)

    @property
    def nominal_pixel_size_A(self) -> float | None:
        """The pixel size in Angstrom that micrographs off `pixel_size_A` are resampled to: the
        median of the distribution the training images' pixel sizes were drawn from (see
        hrtem_wf.models.train), the one pixel size when it did not vary; None when unknown."""
        # Absent from models trained before it was recorded; null where no image recorded one.
        recorded = self.metadata.get("nominal_pixel_size_A")
        if recorded is not None:
            return float(recorded)
        single = self.pixel_size_A  # else a single training pixel size is its own nominal
        return single if isinstance(single, float) else None

    @property
    def weights_path(self) -> Path:
        return self.path / "weights.pt"

    @property
    def history_path(self) -> Path:
        return self.path / "history.csv"

    def load_network(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The network of the block with the weights of weights.pt, on ``device``, in eval mode;
        ValueError naming weights.pt when it is damaged (unreadable, wrong keys, not finite)."""
        path = self.weights_path
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such file (the model's weights)") from None
        except Exception as error:  # torch reports a truncated zip or pickle in several types
            # Its first sentence says what failed; the rest are hints unfit for a damaged file.
            reason = str(error).split(". ")[0]
            raise ValueError(
                f"{path}: cannot be read as torch weights, truncated or corrupt "
                f"({type(error).__name__}: {reason})"
            ) from None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
        for key, tensor in state.items():
            if (
                isinstance(tensor, torch.Tensor)
                and tensor.is_floating_point()
                and not bool(torch.isfinite(tensor).all())
            ):
                raise ValueError(f"{path}: tensor {key!r} has NaN or infinite values")
        model = build_model(self.block, *self.channels)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"{path}: does not fit the network of {self.path / 'metadata.json'} ({error})"
            ) from None
        return model.to(device).eval()
