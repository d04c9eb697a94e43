"""The attention layers: MultiHeadAttention, Attention, AdditiveAttention."""
from .multi_head_attention import MultiHeadAttention

__all__ = ["MultiHeadAttention"]
