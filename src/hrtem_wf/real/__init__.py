"""The real-micrograph side: what the workflow does with a user's own micrographs.

- micrographs: reading instrument files (.dm3/.dm4/.ser/.emd/.tif/.png/.npy) with their pixel size;
  writing masks and calibrated probability TIFFs
- inference: tiled inference of a trained network over a micrograph of any size
- predict: `hrtem-wf predict` over files (maps, masks, and with --analyze the particles)
- particles: each particle's lattice peaks and zone-axis flag (`predict --analyze`)
- sets: real sets (micrographs with hand masks) and a model's F1 on them (the `scores` rule)
- match: what a microscope does, estimated from its micrographs, and a config that imitates it
"""
