"""lookalike: image similarity search with CLIP embeddings stored in Milvus."""

__version__ = "0.1.0"
