"""Engines behind the stages: generation backends and judges (DESIGN.md section 3)."""
