"""kick-checks: gate LLM compression on the LLM-KICK tasks against stored dense baselines."""

__version__ = "0.1.0"
