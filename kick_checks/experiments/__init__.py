"""Experiments: every kick run as a comparable record, and the tools that compare them.

A run (``pytest -m kick --kick-json``, each ``kick sweep`` point) is one experiment: spec, model fingerprint,
parent, per-task and per-item results, per-layer compression facts, and what this package measures during the
run (:mod:`.efficiency`: bytes as stored and tokens per second; :mod:`.divergence`: where the compressed model
departs from its dense parent). :mod:`.store` reads a folder of reports, :mod:`.compare` sets two runs side by
side (``kick compare``), :mod:`.dashboard` writes one self-contained HTML file (``kick dashboard``).
"""
