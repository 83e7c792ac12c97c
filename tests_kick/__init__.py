"""The LLM-KICK checks, collected by ``pytest -m kick`` (the kick-checks plugin adds this package)."""
