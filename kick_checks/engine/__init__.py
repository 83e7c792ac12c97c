"""Generation and scoring machinery the tasks share: greedy decoding with continuous batching over a shared
prefix, the reserved key-value cache, option likelihoods, and batch sizing."""
