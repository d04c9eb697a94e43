"""The attention layers: MultiHeadAttention, GroupedQueryAttention, Attention,
AdditiveAttention."""
from .additive_attention import AdditiveAttention
from .attention import Attention
from .grouped_query_attention import GroupedQueryAttention
from .multi_head_attention import MultiHeadAttention

GroupQueryAttention = GroupedQueryAttention     # Keras' public name

__all__ = ["AdditiveAttention", "Attention", "GroupQueryAttention", "GroupedQueryAttention",
           "MultiHeadAttention"]
