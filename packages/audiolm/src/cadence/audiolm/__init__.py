"""Cadence AudioLM: semantic, coarse and fine transformers with KV-cached sampling, guidance, long-form generation."""
