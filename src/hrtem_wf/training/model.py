"""The segmentation network: a UNet from a short declarative block of the config."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import segmentation_models_pytorch as smp
import torch

#: Two output classes: 0 = background (substrate and vacuum), 1 = particle.
N_CLASSES = 2


def build_model(block: dict) -> torch.nn.Module:
    """An untrained smp UNet: 1 input channel (the micrograph), 2 output logits per pixel."""
    encoder_depth = int(block["encoder_depth"])
    decoder_channels = [int(c) for c in block["decoder_channels"]]
    if len(decoder_channels) != encoder_depth:
        raise ValueError(
            f"decoder_channels {decoder_channels} must have one entry per encoder stage "
            f"(encoder_depth = {encoder_depth})"
        )
    return smp.Unet(
        encoder_name=str(block["encoder"]),
        encoder_depth=encoder_depth,
        encoder_weights=None,  # trained from scratch on simulations, as in the paper
        in_channels=1,
        classes=N_CLASSES,
        decoder_channels=decoder_channels,
    )


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
