"""AI providers behind one protocol: Gemini, any OpenAI-compatible server, an offline demo model.

Every provider streams text deltas from a generator whose return value is the `ProviderResult`, and
raises only `TransientProviderError` (worth retrying) or `PermanentProviderError` (not).
"""
