"""bnexp: reproduce, measure and explain the published findings about Batch Normalization."""

__version__ = "0.1.0"
