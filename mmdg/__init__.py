"""mmdg: multimodal domain generalization (GMP and MER-DG) in small PyTorch pieces."""
__version__ = "0.1.0"
