"""Cadence semantic tokens: HuBERT (fairseq and Hugging Face checkpoints, no fairseq) + k-means, offline MFCC tokenizer."""
