"""adlib: in-context reinforcement learning by Algorithm Distillation."""

__version__ = "0.1.0"
