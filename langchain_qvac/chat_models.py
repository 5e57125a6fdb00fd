"""ChatQvac: a LangChain chat model on a local QVAC model, managed or external."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LangSmithParams
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai.chat_models.base import BaseChatOpenAI
from pydantic import Field

from ._managed import LangChainLeaseHolder, fill_connection


class ChatQvac(LangChainLeaseHolder, BaseChatOpenAI):  # type: ignore[misc]
    """Chat with a QVAC model through `qvac serve`'s OpenAI-compatible API.

    Managed mode (`models=[...]`) starts or reuses a shared serve at construction and releases
    it on `close()`; external mode (`base_url`, `model`) talks to a serve you run yourself.
    Everything `langchain-openai` does (invoke, stream, batch, async, tools, structured output,
    callbacks, usage) works unchanged; requests follow the live serve and a refused connection
    re-resolves it and is retried once.

    Example:
        .. code-block:: python

            from langchain_qvac import ChatQvac

            with ChatQvac(models=["QWEN3_600M_INST_Q4"], max_tokens=128) as llm:
                print(llm.invoke("Hello!").content)
    """

    model_name: str = Field(default="", alias="model")
    """The served alias (managed mode: the default model unless given)."""
    stream_usage: bool | None = True
    """The serve reports token usage in streams."""
    use_responses_api: bool | None = False
    """Always False: the Chat Completions API is what `qvac serve` implements fully."""
    qvac_lease: Any = Field(default=None, exclude=True, repr=False)
    """The shared lease (managed mode); copies of this object share it."""

    def __init__(self, **kwargs: Any) -> None:
        # Connecting here, not in a validator, lets typed errors reach the caller unwrapped.
        super().__init__(**fill_connection(kwargs, embedding=False))

    @property
    def _llm_type(self) -> str:
        return "qvac-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"openai_api_key": "QVAC_API_KEY"}

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """A lease is a live process handle, not data."""
        return False

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "qvac"
        return params

    def _use_responses_api(self, payload: dict[str, Any]) -> bool:
        return False

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._check_open()
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self._check_open()
        return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self._check_open()
        yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        self._check_open()
        async for chunk in super()._astream(messages, stop=stop, run_manager=run_manager, **kwargs):
            yield chunk
