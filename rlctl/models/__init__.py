"""Model-side helpers shared by generation, judging and training (torch imported lazily)."""

from rlctl.models.fp32_head import enable_fp32_lm_head
from rlctl.models.paths import require_model_path
from rlctl.models.tiny import TOKENIZER_DIR, build_tiny

__all__ = ["TOKENIZER_DIR", "build_tiny", "enable_fp32_lm_head", "require_model_path"]
