"""LangChain integration for local QVAC models: `ChatQvac` and `QvacEmbeddings`."""

from langchain_qvac.chat_models import ChatQvac
from langchain_qvac.embeddings import QvacEmbeddings

__all__ = ["ChatQvac", "QvacEmbeddings"]
