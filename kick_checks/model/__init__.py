"""The model under test: finding and loading it (GGUF conversion cached), calibration text, and the cache of
compressed weights."""
