"""π-DOC's library: everything the drivers at the repository root use.

The package never imports a root script (tests/test_layout.py checks it). Its wings:

- `pidoc.frame`: π-DOC's frame, 160×160 pixels of 0.25″ (CB21 §2).
- `pidoc.io`: input checks and atomic writes (a file is complete or absent).
- `pidoc.quantities`: luminosity, mass-to-light ratios, light-weighted centres and radii.
- `pidoc.standardization`: the six training-set constants and (de)standardisation (CB21 §3).
- `pidoc.networks`: the paper's CED and CNN, built in Keras 3, and the readers of their files.
- `pidoc.fast_network`: the general model's single network made for this project's CPU.
- `pidoc.model`: a trained model folder as one object (networks, constants, calibration,
  fingerprint), opened by `open_model` and passed on.
- `pidoc.splits`: reading a generated split and predicting it once (cached).
- `pidoc.mocks`: the forward model of mock clusters and the out-of-domain families.
- `pidoc.calibration`: calibrated intervals (`uncertainty`), the domain verdict (`domain`), their
  coverage (`coverage`), and calibration on a mixture of nuisance families (`mixture`).
- `pidoc.observations`: from real FITS images (one or several chips) to π-DOC's input;
  `pidoc.sky`: the sky of a crowded field; `pidoc.catalogue`: many clusters from a CSV.
"""
