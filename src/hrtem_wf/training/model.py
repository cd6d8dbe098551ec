"""The segmentation network, built from a declarative models block (smp architecture and encoder
names); the study's UNet with a ResNet18 encoder of 3 stages is the default."""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path

import segmentation_models_pytorch as smp
import torch

#: Two output classes: 0 = background (substrate and vacuum), 1 = particle.
N_CLASSES = 2


#: The study's network when a models block names none.
DEFAULT_ARCHITECTURE = "Unet"


def architectures() -> list[str]:
    """smp's architecture names (Unet, UnetPlusPlus, FPN, DeepLabV3Plus, ...)."""
    return sorted(cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values())


def takes_decoder_channels(architecture: str) -> bool:
    """Whether the smp architecture has a per-stage `decoder_channels` list (Unet-like)."""
    parameter = inspect.signature(getattr(smp, architecture).__init__).parameters.get("decoder_channels")
    return parameter is not None and isinstance(parameter.default, tuple | list)


def build_model(block: dict) -> torch.nn.Module:
    """An untrained smp network from a models block: 1 input channel (the micrograph), 2 output
    logits per pixel. `architecture` (default Unet) and `encoder` are smp names; `options` passes
    further smp keywords (e.g. decoder_attention_type: scse)."""
    architecture = str(block.get("architecture", DEFAULT_ARCHITECTURE))
    if architecture not in architectures():
        raise ValueError(f"architecture {architecture!r} is not an smp architecture "
                         f"(have: {architectures()})")
    encoder_depth = int(block["encoder_depth"])
    kwargs = dict(block.get("options") or {})
    if takes_decoder_channels(architecture):
        if block.get("decoder_channels") is None:
            raise ValueError(f"{architecture} needs decoder_channels (one width per encoder stage)")
        decoder_channels = [int(c) for c in block["decoder_channels"]]
        if len(decoder_channels) != encoder_depth:
            raise ValueError(
                f"decoder_channels {decoder_channels} must have one entry per encoder stage "
                f"(encoder_depth = {encoder_depth})"
            )
        kwargs["decoder_channels"] = decoder_channels
    elif block.get("decoder_channels") is not None:
        raise ValueError(f"{architecture} has no per-stage decoder_channels; drop the key "
                         f"(set its decoder through `options`)")
    model = getattr(smp, architecture)(
        encoder_name=str(block["encoder"]),
        encoder_depth=encoder_depth,
        encoder_weights=None,  # trained from scratch on simulations, as in the paper
        in_channels=1,
        classes=N_CLASSES,
        **kwargs,
    )
    _check_output_shape(model, architecture, encoder_depth)
    return model


def _check_output_shape(model: torch.nn.Module, architecture: str, encoder_depth: int) -> None:
    """A segmentation map the size of the input, or a clear error (smp's FPN upsamples x4 at
    any encoder depth, for one)."""
    size = 2**encoder_depth * 8
    model.eval()
    with torch.no_grad():
        shape = tuple(model(torch.zeros(1, 1, size, size)).shape)
    model.train()
    if shape != (1, N_CLASSES, size, size):
        raise ValueError(f"{architecture} with encoder_depth {encoder_depth} maps a {size} x {size} "
                         f"input to {shape[-2]} x {shape[-1]}; set its upsampling in `options`")


def check_image_shape(image_shape: Sequence[int], encoder_depth: int) -> None:
    """Raise ValueError unless height and width survive ``encoder_depth`` halvings exactly."""
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


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A trained model from ``model_dir`` (metadata.json for the block, weights.pt), in eval mode."""
    model_dir = Path(model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    model = build_model(metadata["block"])
    state = torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()
