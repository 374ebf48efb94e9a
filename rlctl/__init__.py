"""rlctl: a command-line toolbox for LLM post-training research."""

__version__ = "0.1.0"
