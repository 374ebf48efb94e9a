"""TRL wiring: trainers TRL lacks (β-DPO), callbacks into the store (DESIGN.md section 3)."""
