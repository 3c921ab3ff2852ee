"""Text side: frozen sentence encoder, sensor and label descriptions, LLM describe tool."""
