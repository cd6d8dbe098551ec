"""Losses: DaCosta et al.'s categorical cross-entropy + (1 - soft F1 of the particle class) for
particle masks; the mean squared error for column confidence maps (Madsen et al. 2018, eq. 6,
its weight decay in the optimizer) and exit waves (Larsen et al. 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Keeps the soft F1 finite for a batch with neither predicted nor labelled particle pixels.
SOFT_F1_EPS = 1e-7


def soft_f1(particle_probability: torch.Tensor, particle_mask: torch.Tensor) -> torch.Tensor:
    """2 sum(p y) / (sum p + sum y), pooled over every pixel of the batch."""
    particle_mask = particle_mask.to(particle_probability.dtype)
    overlap = (particle_probability * particle_mask).sum()
    total = particle_probability.sum() + particle_mask.sum()
    return 2.0 * overlap / (total + SOFT_F1_EPS)


def segmentation_loss(
    logits: torch.Tensor, particle_mask: torch.Tensor, weights: dict
) -> torch.Tensor:
    """w_ce x mean pixel cross-entropy + w_f1 x (1 - soft F1); logits (B, 2, H, W), mask (B, H, W)
    in {0, 1}; weights {cross_entropy, soft_f1} (a models block's `loss`; the study's: 1 and 1)."""
    particle_mask = particle_mask.long()
    loss = weights["cross_entropy"] * F.cross_entropy(logits, particle_mask)
    if weights["soft_f1"]:
        particle_probability = torch.softmax(logits, dim=1)[:, 1]
        loss = loss + weights["soft_f1"] * (1.0 - soft_f1(particle_probability, particle_mask))
    return loss


#: An exit-wave network's output is the wave's departure from vacuum, abTEM's plane wave 1 + 0j
#: (the (real, imaginary) channels): what it must learn is the sample, not the offset.
VACUUM_WAVE = (1.0, 0.0)


def task_output(task: str, outputs: torch.Tensor) -> torch.Tensor:
    """The maps a network's raw outputs (B, K, H, W) stand for: softmax probabilities over the
    column classes and background; the exit wave = vacuum + output; particle logits as they are."""
    if task == "columns":
        return torch.softmax(outputs, dim=1)
    if task == "exit_wave":
        vacuum = outputs.new_tensor(VACUUM_WAVE).view(1, 2, 1, 1)
        return outputs + vacuum
    return outputs


def task_loss(
    task: str, outputs: torch.Tensor, targets: torch.Tensor, weights: dict
) -> torch.Tensor:
    """The loss of a models block's task: `segmentation_loss` for particle masks; for the others
    the mean squared error against the targets (B, K, H, W) of `task_output`: the softmax over the
    column classes and background (confidence maps that sum to one, as Madsen's ground truth),
    or the exit wave (vacuum + the linear output). weights["column_loss"] = "cross_entropy" (a
    models block's `column_loss`) scores column maps by the soft cross-entropy
    -mean(sum_k target_k log softmax_k) instead."""
    if task == "segmentation":
        return segmentation_loss(outputs, targets, weights)
    targets = targets.to(outputs.dtype)
    if task == "columns" and weights.get("column_loss", "mse") == "cross_entropy":
        return -(targets * F.log_softmax(outputs, dim=1)).sum(dim=1).mean()
    return F.mse_loss(task_output(task, outputs), targets)
