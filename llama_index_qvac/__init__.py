"""LlamaIndex integration for local QVAC models: `QvacLLM` and `QvacEmbedding`."""

from llama_index_qvac.embeddings import QvacEmbedding
from llama_index_qvac.llms import QvacLLM

__all__ = ["QvacEmbedding", "QvacLLM"]
