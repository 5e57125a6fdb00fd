"""QvacEmbeddings: LangChain embeddings from a local QVAC embedding model."""

from __future__ import annotations

from typing import Any

from langchain_openai import OpenAIEmbeddings
from pydantic import Field

from ._managed import LangChainLeaseHolder, fill_connection


class QvacEmbeddings(LangChainLeaseHolder, OpenAIEmbeddings):  # type: ignore[misc]
    """Embeddings from `qvac serve`'s `/v1/embeddings`, managed or external.

    Local embedding files are served with mean pooling (one vector per text); a response with
    the wrong number of rows is an error naming the fix, never a silent mismatch.

    Example:
        .. code-block:: python

            from langchain_qvac import QvacEmbeddings

            with QvacEmbeddings(models=["EMBEDDINGGEMMA_300M_Q4_0"]) as emb:
                vectors = emb.embed_documents(["a", "b"])
    """

    model: str = ""
    """The served embedding alias (managed mode: the first embedding model unless given)."""
    check_embedding_ctx_length: bool = False
    """Off: texts go to the serve as they are (no tiktoken splitting, which is OpenAI's)."""
    qvac_lease: Any = Field(default=None, exclude=True, repr=False)

    def __init__(self, **kwargs: Any) -> None:
        # Connecting here, not in a validator, lets typed errors reach the caller unwrapped.
        super().__init__(**fill_connection(kwargs, embedding=True))

    def embed_documents(
        self, texts: list[str], chunk_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]:
        self._check_open()
        return super().embed_documents(texts, chunk_size=chunk_size, **kwargs)

    async def aembed_documents(
        self, texts: list[str], chunk_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]:
        self._check_open()
        return await super().aembed_documents(texts, chunk_size=chunk_size, **kwargs)
