"""The LLM layer: OpenAI-compatible providers and the AI features built on them (issue 8)."""
