"""Package data: small real samples of public datasets, with their licenses."""

from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"
