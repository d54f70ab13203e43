"""bga-mner: real-time multimodal named-entity recognition on social-media streams.

This package is the torch-free core shared by `worker/` (serving) and `training/`:
the CLI, text preprocessing, CRF decoding and the model-repository contract.
"""

__version__ = "0.1.0"
