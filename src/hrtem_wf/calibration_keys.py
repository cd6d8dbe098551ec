"""Which values of an images block the `calibration` rule measures: `label.grow_A`, `blur_A` and
`dose_e_per_A2` given as `{calibrate: <real set>, ...}` (hrtem_wf.images.calibration).

One definition for the config check (which must not import the image code) and for the stages
that resolve and draw such a block (whose code versions must not depend on the config module):
it imports nothing of the package.
"""

from __future__ import annotations

from collections.abc import Mapping


def calibrations_asked(images_block: Mapping) -> dict[str, Mapping]:
    """{key: value} of the block's values left to the `calibration` rule ({calibrate: <real
    set>, ...}): label.grow_A, blur_A, dose_e_per_A2. A block without them (or a partial one)
    asks for none."""
    label = images_block.get("label") or {}
    values = {
        "label.grow_A": label.get("grow_A"),
        "blur_A": images_block.get("blur_A"),
        "dose_e_per_A2": images_block.get("dose_e_per_A2"),
    }
    return {k: v for k, v in values.items() if isinstance(v, Mapping) and "calibrate" in v}
