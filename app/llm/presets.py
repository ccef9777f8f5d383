"""Defaults for the OpenAI-compatible providers Chinese teams use, so a provider can be given
as `{"name": "ds", "preset": "deepseek", "api_key": "..."}`.

A flag given in the settings always wins over its preset. The capability flags are the cautious
reading of each provider's documentation at the time of writing: `json_schema` only where the
provider documents it (DeepSeek and GLM reject it), `stream_usage` only where usage arrives in
a final streamed chunk when asked with `stream_options`. Where a flag is off the layer still
works: JSON is asked for with a forced function call (`tools`) or in the prompt alone, and
validated; usage is recorded as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.config import LlmProviderSettings


@dataclass(frozen=True)
class Preset:
    base_url: str
    model: str  # "" where the model must be named (an Ark endpoint, a vLLM served model)
    json_object: bool = True
    json_schema: bool = False
    tools: bool = True
    stream_usage: bool = True


PRESETS: dict[str, Preset] = {
    "deepseek": Preset("https://api.deepseek.com/v1", "deepseek-chat"),
    # Qwen through DashScope's compatible mode.
    "dashscope": Preset("https://dashscope.aliyuncs.com/compatible-mode/v1", "qwen-plus"),
    "zhipu": Preset("https://open.bigmodel.cn/api/paas/v4", "glm-4-flash", stream_usage=False),
    "moonshot": Preset("https://api.moonshot.cn/v1", "moonshot-v1-8k", stream_usage=False),
    # Volcengine Ark (Doubao): the model is the endpoint id (ep-...) of one's own deployment.
    "ark": Preset("https://ark.cn-beijing.volces.com/api/v3", "", json_object=False),
    "siliconflow": Preset("https://api.siliconflow.cn/v1", "Qwen/Qwen2.5-7B-Instruct", stream_usage=False),
    "ollama": Preset("http://127.0.0.1:11434/v1", "qwen2.5:7b", tools=False),
    "vllm": Preset("http://127.0.0.1:8000/v1", "", json_schema=True),
}

# Without a preset: what every OpenAI-compatible server is expected to accept.
DEFAULT = Preset("", "", json_object=True, json_schema=False, tools=False, stream_usage=False)


def apply_preset(provider: LlmProviderSettings) -> None:
    """Fill what `provider` leaves unset from its preset (or the plain defaults)."""
    if provider.preset is not None and provider.preset not in PRESETS:
        raise ValueError(f"unknown LLM preset {provider.preset!r}; known: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[provider.preset] if provider.preset else DEFAULT
    provider.base_url = provider.base_url or preset.base_url
    provider.model = provider.model or preset.model
    for flag in ("json_object", "json_schema", "tools", "stream_usage"):
        if getattr(provider, flag) is None:
            setattr(provider, flag, getattr(preset, flag))
