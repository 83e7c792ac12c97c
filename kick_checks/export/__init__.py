"""``kick export``: quantize as the suite does and write a GPTQ checkpoint."""
