"""QvacEmbedding: LlamaIndex embeddings from a local QVAC embedding model."""

from __future__ import annotations

from typing import Any

from llama_index.embeddings.openai_like import OpenAILikeEmbedding
from pydantic import Field

from ._managed import LlamaIndexLeaseHolder, connect_args


class QvacEmbedding(LlamaIndexLeaseHolder, OpenAILikeEmbedding):  # type: ignore[misc]
    """Embeddings from `qvac serve`'s `/v1/embeddings`, managed or external.

    Local embedding files are served with mean pooling (one vector per text); a response with
    the wrong number of rows is an HTTP 422 error naming the fix, never a silent mismatch.
    `model_name` is the served alias (managed mode: the first embedding model unless given).

    Example:
        .. code-block:: python

            from llama_index_qvac import QvacEmbedding

            with QvacEmbedding(models=["EMBEDDINGGEMMA_300M_Q4_0"]) as emb:
                vectors = emb.get_text_embedding_batch(["a", "b"])
    """

    api_key: str = Field(default="", repr=False, description="The serve's bearer key.")

    def __init__(self, **data: Any) -> None:
        conn = connect_args(data, "model_name", embedding=True)
        with conn.released_on_error():
            super().__init__(**data)
        self._attach(conn.shared)

    @classmethod
    def class_name(cls) -> str:
        return "QvacEmbedding"
