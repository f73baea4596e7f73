"""aicpp-opt: MILP planning of GPU fleets for serving mixture-of-experts LLMs."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""Root of the checkout (models/, cost_tables/ and instances/ live here in a checkout; an
installed wheel carries them as package data, see ``aicpp_opt.paths``)."""
