"""QvacLLM: a LlamaIndex LLM on a local QVAC model, managed or external."""

from __future__ import annotations

from typing import Any

from llama_index.llms.openai_like import OpenAILike
from pydantic import Field

from qvac_managed_core.connection import SERVE_DEFAULT_CTX

from ._managed import LlamaIndexLeaseHolder, connect_args


class QvacLLM(LlamaIndexLeaseHolder, OpenAILike):  # type: ignore[misc]
    """Chat with a QVAC model through `qvac serve`'s OpenAI-compatible API.

    Managed mode (`models=[...]`) starts or reuses a shared serve at construction and releases
    it on `close()`, at collection or at exit; external mode (`api_base`, `model`) talks to a
    serve you run yourself. Chat, complete, streaming, async, function calling and structured
    prediction are LlamaIndex's `OpenAILike`; requests follow the live serve, and a refused
    connection re-resolves it and is retried once.

    `is_function_calling_model` is False by default (a small base model cannot really call
    tools); set it True for a bigger model, and serve it with `config={"tools": True}`.

    Example:
        .. code-block:: python

            from llama_index_qvac import QvacLLM

            with QvacLLM(models=["QWEN3_600M_INST_Q4"], max_tokens=128) as llm:
                print(llm.complete("Hello!").text)
    """

    model: str = Field(
        default="",
        description="The served alias (managed mode: the default chat model unless given).",
    )
    api_key: str | None = Field(default=None, repr=False, description="The serve's bearer key.")
    is_chat_model: bool = Field(
        default=True, description="Use /v1/chat/completions (what `qvac serve` implements fully)."
    )
    context_window: int = Field(
        default=SERVE_DEFAULT_CTX,
        description="Tokens the model sees: its config's ctx_size, else the serve's default.",
    )

    def __init__(self, **data: Any) -> None:
        conn = connect_args(data, "model", embedding=False)
        if data.get("context_window") is None:
            data["context_window"] = conn.context_window()
        with conn.released_on_error():
            super().__init__(**data)
        self._attach(conn.shared)

    @classmethod
    def class_name(cls) -> str:
        return "QvacLLM"
