"""RxVision: pill-image identification library (plain PyTorch; no ZenML, no BentoML)."""

__version__ = "0.1.0"
