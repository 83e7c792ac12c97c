"""What one decoding step costs, and where it goes: the figures behind docs/performance.md's summarization floor.

    python bench/decode_step.py [--model smollm2-135m] [--dtype float32] [--rows 32] [--cached 460] [--repeats 10]

The model gets a key-value cache of ``--rows`` rows of ``--cached`` random keys and values (the engine's own
cache type, a few masked columns on the left of every row), and the script prints, each the mean of
``--repeats`` runs after three warm-ups:
- a step of one token a row, as the engine runs it (a ready 4-D boolean mask), split by module with forward
  hooks: attention (and its four projections), MLP, norms, output layer;
- steps of 2, 3 and 5 tokens a row (a prompt-lookup draft step), through transformers' attention (which repeats
  the cached keys and values for each query head of a group) and through kick-checks' grouped attention;
- SDPA over every layer's cache for one query token a row, against merely reading those caches (a sum): how
  far the attention kernel is from the machine's read rate.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from functools import partial


def _mean_ms(run, repeats: int) -> float:
    for _ in range(3):
        run()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--cached", type=int, default=460, help="cached tokens a row")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import torch

    from kick_checks.engine.grouped_attention import grouped_decoding
    from kick_checks.engine.kv_cache import cache_keyword, reserved_cache
    from kick_checks.model.loading import load_model, resolve_model

    model = load_model(resolve_model(args.model), dtype=args.dtype, device="cpu").model
    config = model.config
    rows, cached = args.rows, args.cached
    kv_heads = config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    generator = torch.Generator().manual_seed(0)
    key_values = [(torch.randn(rows, kv_heads, cached, head_dim, generator=generator).to(model.dtype),
                   torch.randn(rows, kv_heads, cached, head_dim, generator=generator).to(model.dtype))
                  for _ in range(config.num_hidden_layers)]
    cache = reserved_cache(key_values, 16)
    keyword = cache_keyword(model)

    def step(tokens: int):
        """One forward pass of ``tokens`` new tokens a row; the cache is cut back to ``cached`` afterwards."""
        mask = torch.ones(rows, cached + tokens, dtype=torch.bool)
        mask[:, :8] = False
        # one token: the engine's decoding step, a ready 4-D mask; more: a draft step, transformers builds the mask
        mask = mask[:, None, None, :] if tokens == 1 else mask.long()
        ids = torch.randint(100, 1000, (rows, tokens), generator=generator)
        positions = torch.arange(cached, cached + tokens)[None].expand(rows, -1)
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=tokens,
                  **{keyword: cache})
        for layer in cache.layers:
            for store in layer._stores.values():
                store.length = cached

    print(f"model {args.model} ({args.dtype}), {rows} rows at {cached} cached tokens, "
          f"{torch.get_num_threads()} torch threads")
    print()
    one = _mean_ms(lambda: step(1), args.repeats)
    spent: dict[str, float] = defaultdict(float)
    handles = []

    def timed(module, name: str) -> None:
        started = {}
        handles.append(module.register_forward_pre_hook(lambda *_: started.__setitem__("at", time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda *_: spent.__setitem__(name, spent[name] + time.perf_counter() - started["at"])))

    for layer in model.model.layers:
        timed(layer.self_attn, "attention (all of it)")
        for projection in ("q_proj", "k_proj", "v_proj", "o_proj"):
            timed(getattr(layer.self_attn, projection), "attention projections")
        timed(layer.mlp, "MLP")
        timed(layer.input_layernorm, "norms")
        timed(layer.post_attention_layernorm, "norms")
    timed(model.lm_head, "output layer")
    with grouped_decoding(model):
        for _ in range(args.repeats):
            step(1)
    for handle in handles:
        handle.remove()
    print(f"| one-token step, {rows} rows | ms |")
    print("|---|---|")
    print(f"| whole step (no hooks) | {one:.1f} |")
    for name, seconds in spent.items():
        print(f"| {name} (hooked) | {seconds / args.repeats * 1000:.1f} |")
    print()

    print("| tokens a row | transformers' attention ms | grouped attention ms |")
    print("|---|---|---|")
    for tokens in (1, 2, 3, 5):
        theirs = _mean_ms(partial(step, tokens), args.repeats)
        with grouped_decoding(model):
            ours = _mean_ms(partial(step, tokens), args.repeats)
        print(f"| {tokens} | {theirs:.1f} | {ours:.1f} |")
    print()

    groups = config.num_attention_heads // kv_heads
    query = torch.randn(rows, kv_heads, groups, head_dim, generator=generator).to(model.dtype)
    mask = torch.ones(rows, 1, 1, cached, dtype=torch.bool)
    mask[:, :, :, :8] = False
    with torch.inference_mode():
        attention = _mean_ms(lambda: [torch.nn.functional.scaled_dot_product_attention(query, keys, values,
                                                                                       attn_mask=mask)
                                      for keys, values in key_values], args.repeats)
        reading = _mean_ms(lambda: [(keys.sum(), values.sum()) for keys, values in key_values], args.repeats)
    megabytes = sum(keys.numel() * keys.element_size() * 2 for keys, _ in key_values) / 1e6
    print(f"| every layer's cache ({megabytes:.0f} MB), one query token a row | ms | GB/s |")
    print("|---|---|---|")
    print(f"| SDPA (query heads of a group folded, as transformers does) | {attention:.1f} "
          f"| {megabytes / attention:.1f} |")
    print(f"| reading it (a sum) | {reading:.1f} | {megabytes / reading:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
